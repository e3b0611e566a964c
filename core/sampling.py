"""
Sampling that does not depend on the batch: `RowSampler`, a transformers logits processor used by every stage that
samples text (the VLM captions, the LLM prompts). Torch's global RNG is one stream shared by a batch, so a row's draw
would depend on its neighbours; here each row draws from its OWN generator (seeded from the row's seed) and the
uniform number becomes a token by inverse CDF over the warped probabilities. Only that token is left finite, so
generate() runs "greedy" over it. Same seed -> same tokens at batch 1 or 128 (up to the kernels' numerics).
"""
import torch
from transformers import LogitsProcessor

from core.knobs import InputError


class RowSampler(LogitsProcessor):
    """Repetition penalty (padding excluded; over the last `repetition_window` tokens of prompt and output, 0 = all)
    and, when sampling, temperature -> top-k -> top-p -> one draw per row from the row's own generator. Returns
    logits where only the chosen token is finite, so greedy search takes it."""

    def __init__(self, seeds, pad_lengths, sample=True, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                 repetition_window=0):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.pad_lengths = torch.as_tensor(pad_lengths, dtype=torch.long)
        self.penalty, self.window = float(repetition_penalty), int(repetition_window)
        # per row: sample, or take the most likely token (a batch may mix first greedy tries with sampled retries)
        self.sample = torch.as_tensor([sample] * len(seeds) if isinstance(sample, bool) else list(sample))
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.warpers = []
        if self.sample.any():
            if temperature <= 0:
                raise InputError(f"TEMPERATURE must be > 0 when sampling, got {temperature}")
            if temperature != 1.0:
                self.warpers.append(TemperatureLogitsWarper(temperature))
            if top_k > 0:
                self.warpers.append(TopKLogitsWarper(top_k))
            if top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(top_p))

    def _penalize(self, input_ids, scores):
        self.pad_lengths = pad = self.pad_lengths.to(input_ids.device)  # moved once, on the first step
        length = input_ids.shape[1]
        # each row's first counted position: after its left padding, and inside the window when there is one
        first = pad.clamp(min=max(0, length - self.window) if self.window > 0 else 0)
        counted = torch.arange(length, device=input_ids.device)[None, :] >= first[:, None]
        # an uncounted slot points at the row's first counted token, penalised anyway: the pad token (and a token
        # only before the window) is left alone
        first_token = input_ids.gather(1, first.clamp(max=length - 1)[:, None])
        ids = torch.where(counted, input_ids, first_token)
        picked = scores.gather(1, ids)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, ids, picked)

    def __call__(self, input_ids, scores):
        scores = scores.float()
        if self.penalty != 1.0:
            scores = self._penalize(input_ids, scores)
        if not self.sample.any():
            return scores  # plain greedy search
        greedy = scores.argmax(-1, keepdim=True)
        warped = scores
        for warper in self.warpers:
            warped = warper(input_ids, warped)
        cdf = torch.softmax(warped, dim=-1).cumsum(-1)
        # u in (0, 1]: the chosen token always has a probability > 0 (searchsorted lands on a rise of the CDF)
        u = torch.stack([1.0 - torch.rand((), generator=g) for g in self.generators]).to(scores.device)
        sampled = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).clamp(max=scores.shape[1] - 1)
        token = torch.where(self.sample.to(scores.device)[:, None], sampled, greedy)
        return torch.full_like(scores, -torch.inf).scatter(1, token, 0.0)


def token_texts(tokenizer, skip_special_tokens=True):
    """Each token id's text on its own, for ids 0 .. len(tokenizer) - 1 (the vocabulary decoded in one call)."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=skip_special_tokens)


def blank_token_ids(tokenizer, is_blank=lambda text: not text.strip()):
    """Ids whose text on its own is blank (pad, unk, bos, a lone space or newline; `is_blank` decides): the stages
    that generate never let one be the first token."""
    return [i for i, text in enumerate(token_texts(tokenizer)) if is_blank(text)]
