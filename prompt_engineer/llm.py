"""
Batched text generation with any transformers causal LM, deterministic per row whatever the batch.

`TransformersGenerator.generate(prompts, seeds, sample)` runs one left-padded `model.generate` call over the whole
batch and returns, per prompt, (generated text, tokens generated). What makes a row's text independent of its batch:

- Sampling does not use torch's global RNG (one stream shared by the batch, so a row's draw would depend on its
  neighbours): `core.sampling.RowSampler`, a logits processor, draws one uniform number per step from the row's OWN generator
  (seeded from the row's seed) and turns it into a token by inverse-CDF over the warped probabilities; generate then
  runs "greedy" over the one token left. Same seed -> same tokens, at batch 1 or 128 (up to the kernels' numerics: on a
  GPU, bf16 matmuls of another batch shape may round differently).
- The repetition penalty is applied here too, over the prompt and generated tokens but NOT over the left padding
  (transformers' own processor penalises the pad token in padded rows only, which changes those rows' logits whenever
  pad == eos).
- The sampling is exactly the knobs': generate() fills every GenerationConfig field a caller leaves unset from the
  checkpoint's generation_config.json (Qwen2.5: do_sample, temperature 0.7, top_p 0.8, top_k 20, repetition_penalty
  1.05), so the generator's config is complete and becomes the model's own: nothing of the checkpoint's applies.
- Each row stops at the end of its first non-blank line (`FirstLineStop`): the stage keeps the first line only, so
  the tokens after it would be wasted; a row that is done no longer costs anything but its slot in the batch.

`VllmGenerator` does the same with vLLM when it is installed (per-request seeds; not needed, never imported otherwise).
"""
import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

import models
from core import devices
from core.knobs import InputError
from core.sampling import RowSampler, token_texts


def prepare_tokenizer(tokenizer, name):
    """Left padding (decoder-only batches), a pad token (eos when the model has none)."""
    tokenizer.padding_side = "left"
    # prompts are measured against the model's window, not the tokenizer's nominal one: no "longer than" warning
    getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError(f"model {name!r}: its tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render(tokenizer, text, chat):
    """The string the model reads: `text` as the user's turn through the chat template, or `text` as is."""
    if not chat:
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


class FirstLineStop(StoppingCriteria):
    """Per row: done once a line with text in it has ended (a token holding a newline after some text)."""

    def __init__(self, tables, batch_size, device):
        self.has_newline, self.text_then_newline, self.blank = (t.to(device) for t in tables)
        self.has_text = torch.zeros(batch_size, dtype=torch.bool, device=device)

    def __call__(self, input_ids, scores, **kwargs):
        last = input_ids[:, -1]
        done = (self.has_newline[last] & self.has_text) | self.text_then_newline[last]
        self.has_text |= ~self.blank[last]
        return done


def newline_tables(tokenizer, vocab_size):
    """Per token id: (contains a newline, has text before a newline, decodes to blank), as bool tensors."""
    # the output layer may be larger than the tokenizer (padded to a multiple of 64): those ids decode to nothing
    known = min(vocab_size, len(tokenizer))
    texts = token_texts(tokenizer, skip_special_tokens=False)[:known] + [""] * (vocab_size - known)
    special = set(tokenizer.all_special_ids)
    has_newline = torch.tensor(["\n" in t for t in texts])
    text_then_newline = torch.tensor(["\n" in t and bool(t.split("\n", 1)[0].strip()) for t in texts])
    blank = torch.tensor([i in special or not t.strip() for i, t in enumerate(texts)])
    return has_newline, text_then_newline, blank


class TransformersGenerator:
    """A causal LM and its tokenizer, generating batches of rendered prompts (see the module docstring)."""

    def __init__(self, model, tokenizer, max_new_tokens=77, temperature=0.9, top_p=0.95, top_k=150,
                 repetition_penalty=1.2, repetition_window=0, stop_at_first_line=True, name="model"):
        self.model, self.tokenizer, self.name = model.eval(), prepare_tokenizer(tokenizer, name), name
        self.device = next(model.parameters()).device
        self.max_new_tokens = max_new_tokens
        self.sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                             repetition_window=repetition_window)
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)  # chat models end a turn with their own token: stop on either
        self.generation_config = exact_generation_config(max_new_tokens, tokenizer.pad_token_id, eos or None,
                                                         model.generation_config.bos_token_id)
        # generate() fills what is unset from the model's generation_config: make that this one, so the checkpoint's
        # sampling defaults (Qwen: repetition_penalty 1.05, temperature 0.7, top_k 20 ...) never apply
        model.generation_config = self.generation_config
        vocab = model.get_output_embeddings().weight.shape[0]
        self.tables = newline_tables(tokenizer, vocab) if stop_at_first_line else None

    def count_tokens(self, text):
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts, seeds, sample=True):
        """[(text, tokens generated)] for rendered prompts, one per prompt, row i drawn from seeds[i]; `sample`: one
        bool for all rows or one per row (False: greedy)."""
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        pad_lengths = (mask == 0).sum(1).cpu()
        processors = LogitsProcessorList([RowSampler(seeds, pad_lengths, sample, **self.sampling)])
        stops = StoppingCriteriaList([FirstLineStop(self.tables, len(prompts), self.device)] if self.tables else [])
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, logits_processor=processors,
                                      generation_config=self.generation_config, stopping_criteria=stops)
        new = out[:, input_ids.shape[1]:].cpu()
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        counts = (new != self.tokenizer.pad_token_id).sum(1).tolist()
        return list(zip(texts, counts))


def exact_generation_config(max_new_tokens, pad_token_id, eos_token_id, bos_token_id):
    """Greedy decoding over what RowSampler leaves: a fresh GenerationConfig, whose every field that changes a token
    choice (penalties, warpers, forced or suppressed tokens, beams) is at its neutral default. The caller makes it the
    model's generation_config too, since generate() fills fields left at their defaults from that one."""
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad_token_id,
                            eos_token_id=eos_token_id, bos_token_id=bos_token_id)


def load_transformers(name, device="auto", dtype="bf16", trust_remote_code=False, gguf_file="", *, smoke, **kwargs):
    """TransformersGenerator for a hub id[@revision] or local folder (`smoke`, the run's cfg.SMOKE: the tiny stand-in
    of models' `llm`); bf16/fp16 on CUDA, fp32 on the CPU; a torch dtype is taken as is (tests run bf16 on the CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = devices.pick_device(device)
    extra = dict(trust_remote_code=trust_remote_code, **({"gguf_file": gguf_file} if gguf_file else {}))
    tokenizer = models.load(AutoTokenizer.from_pretrained, name, "llm", smoke=smoke, **extra)
    model = models.load(AutoModelForCausalLM.from_pretrained, name, "llm", smoke=smoke,
                        dtype=devices.pick_dtype(device, dtype), **extra).to(device)
    return TransformersGenerator(model, tokenizer, name=name, **kwargs)


class VllmGenerator:
    """The same interface on vLLM (optional: only when `import vllm` works). Per-request seeds make each row's
    sampling independent of its batch; the first line is cut afterwards (a stop string would end on a leading
    newline)."""

    def __init__(self, name, dtype="bf16", trust_remote_code=False, max_new_tokens=77, temperature=0.9, top_p=0.95,
                 top_k=150, repetition_penalty=1.2, max_model_len=4096, *, smoke, **_):
        try:
            from vllm import LLM
        except ImportError:
            raise InputError("BACKEND=vllm needs the vllm package (pip install vllm); or use BACKEND=transformers") \
                from None
        source = models.resolve(name, "llm", smoke=smoke)
        self.name = name
        self.llm = LLM(model=source.path, revision=source.revision or None,
                       dtype={"bf16": "bfloat16", "fp16": "float16"}.get(dtype, "float32"),
                       trust_remote_code=trust_remote_code, max_model_len=max_model_len)
        self.tokenizer = prepare_tokenizer(self.llm.get_tokenizer(), name)
        self.params = dict(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                           repetition_penalty=repetition_penalty)

    def count_tokens(self, text):
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts, seeds, sample=True):
        from vllm import SamplingParams

        sample = [sample] * len(seeds) if isinstance(sample, bool) else sample
        params = [SamplingParams(**{**self.params, "temperature": self.params["temperature"] if do else 0.0},
                                 seed=int(s) % (2 ** 63)) for s, do in zip(seeds, sample)]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        return [(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outputs]
