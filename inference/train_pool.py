"""
The training banners as the generation methods need them on every run: their statistics, computed once and cached on
disk by the CONTENT of the banners (a sha256 over names and file hashes), so they are never recomputed for the same set
and never reused for a changed one: the mean colour (post-processing) and the Inception features (through the
evaluation's feature cache); and the duplication guard that measures an output against them.

The duplication guard: the seed's Method 1 FAILED the competition's duplication check (0.908): img2img at strength 0.6
keeps too much of the init banner. The similarity here is the cosine of the FID Inception-v3 pool features
(evaluation/inception.py), the same features the evaluation's duplication measure uses, so the guard and the report
agree. An output is compared with EVERY training banner (its init banner is one of them), and the most similar one is
reported.
"""
import hashlib
from pathlib import Path

import numpy as np

from core.dataset import read_info, split_dir
from core.files import file_hash, read_json, write_json
from core.images import check_image, mean_color


def train_banners(data_dir):
    """(names, paths) of every training banner listed in train/info.csv, checked to exist and decode."""
    train = split_dir("train", data_dir)
    info = read_info(train / "info.csv")
    names = info["bannerImage"].tolist()
    paths = [train / "images" / name for name in names]
    for row_id, path in zip(info["id"], paths):
        check_image(path, f"train row id={row_id}")
    return names, paths


def pool_key(names, paths):
    """Content hash of a set of banners: same names and bytes -> same key, whatever the folder or mtime."""
    h = hashlib.sha256()
    for name, path in zip(names, paths):
        h.update(f"{name}\0{file_hash(path)}\n".encode())
    return h.hexdigest()[:24]


def cached_mean_color(names, paths, cache_dir, key=None):
    """Mean RGB (0..1) of the banners, from `cache_dir/mean_color_<key>.json` when there."""
    key = key or pool_key(names, paths)
    path = Path(cache_dir) / f"mean_color_{key}.json"
    cached = read_json(path)
    if cached:
        return tuple(cached["mean_color"])
    color = mean_color(paths)
    write_json(path, {"mean_color": list(color), "banners": len(paths)})
    return color


def cached_inception(paths, cache_dir, extractor):
    """(n, 2048) Inception features of the banners from the evaluation's content-keyed cache (one file shared with
    `run/evaluate.sh`, so the guard and the duplication report featurise each training banner once between them)."""
    from evaluation.feature_cache import FeatureCache

    cache = FeatureCache(Path(cache_dir) / "inception_features.safetensors", extractor)
    return cache.features(paths, progress="inception features of the training banners (cached)",
                          skip_hint="--DUP_GUARD=0 skips the duplication guard")


class DupGuard:
    def __init__(self, names, paths, cache_dir, device="cpu"):
        from evaluation.inception import InceptionFeatures, l2_normalize

        self.extractor = InceptionFeatures(device=device)
        self.names = list(names)
        self.pool = l2_normalize(cached_inception(paths, cache_dir, self.extractor))  # once, not per batch

    def measure(self, images):
        """PIL images -> (similarity to the nearest training banner, that banner's name) for each."""
        from evaluation.inception import max_cosine

        if not images:
            return np.zeros(0), []
        sims, idx = max_cosine(self.extractor(list(images)), self.pool, pool_normalized=True)
        return sims, [self.names[i] for i in idx]


def training_stats(data_dir, device, cache_dir, dup_guard=True, mean_rgb=False):
    """(duplication guard or None, training mean colour or None), from the on-disk cache after the first run."""
    guard = color = None
    if dup_guard or mean_rgb:
        names, paths = train_banners(data_dir)
        if mean_rgb:
            color = cached_mean_color(names, paths, cache_dir)
        if dup_guard:
            guard = DupGuard(names, paths, cache_dir, device=device)
    return guard, color
