"""
CLIP score (prompt <-> image): 100 * max(cosine(CLIP image embedding, CLIP text embedding), 0), the definition of
Hessel et al. (2021) that torchmetrics' CLIPScore uses, computed with open_clip (torchmetrics' CLIPScore breaks on
transformers 5). The model is a hub id (an open_clip repo on the Hugging Face hub, e.g. laion/CLIP-ViT-B-32-laion2B-s34B-b79K)
or a local folder with open_clip_config.json + weights; `smoke` (the run's cfg.SMOKE) swaps in the tiny random
open_clip model.
CLIP reads English only and 77 tokens: give it the translated caption where there is one (longer text is truncated).
"""
import numpy as np
import torch

import models
from core.images import load_rgb


def _load_open_clip(path):
    import os

    import open_clip

    name = f"local-dir:{path}" if os.path.isdir(path) else f"hf-hub:{path}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


class ClipScorer:
    def __init__(self, model_name, device="cpu", *, smoke):
        # open_clip takes no revision: a hub id@revision as a folder
        folder = models.local_folder(model_name, "clip", smoke=smoke)
        self.model, self.preprocess, self.tokenizer = models.load(_load_open_clip, folder, "clip", smoke=smoke)
        self.model.to(device)
        self.device = device

    @torch.inference_mode()
    def __call__(self, image_paths, texts, batch_size=16):
        scores = []
        for start in range(0, len(image_paths), batch_size):
            paths, prompts = image_paths[start:start + batch_size], texts[start:start + batch_size]
            pixels = torch.stack([self.preprocess(load_rgb(p)) for p in paths]).to(self.device)
            tokens = self.tokenizer(list(prompts)).to(self.device)
            img = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
            txt = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
            scores.append((100 * (img * txt).sum(-1).clamp(min=0)).cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0)
