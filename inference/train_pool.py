"""
Statistics of the training banners that the generation methods need on every run, computed once and cached on disk by
the CONTENT of the banners (a sha256 over names and file hashes), so they are never recomputed for the same set and
never reused for a changed one: the mean colour (post-processing) and the Inception features (duplication guard,
through the evaluation's feature cache).
"""
import hashlib
from pathlib import Path

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


def training_stats(data_dir, device, cache_dir, dup_guard=True, mean_rgb=False):
    """(duplication guard or None, training mean colour or None), from the on-disk cache after the first run."""
    guard = color = None
    if dup_guard or mean_rgb:
        names, paths = train_banners(data_dir)
        if mean_rgb:
            color = cached_mean_color(names, paths, cache_dir)
        if dup_guard:
            from inference.dup_guard import DupGuard

            guard = DupGuard(names, paths, cache_dir, device=device)
    return guard, color
