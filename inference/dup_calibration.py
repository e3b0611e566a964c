"""
Where to put DUP_MAX: the duplication guard's similarity (Inception cosine) between DISTINCT training banners, and
between a training banner and simple near-copies of it (blur, desaturation, down-and-up scaling).

usage: python -m inference.dup_calibration --DATA_DIR=../shared/zac2023 [--N=200]
"""
import random

import numpy as np
from PIL import ImageEnhance, ImageFilter

from core import devices, images, knobs

DATA_DIR = "data"  # dataset root (also from env DATA_DIR)
N = 200  # random training banners (features cost ~1 s each on a CPU)
N_COPIES = 30  # of those, how many get near-copies
SEED = 0  # which banners

NEAR_COPIES = {
    "blur radius 2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "blur radius 6": lambda im: im.filter(ImageFilter.GaussianBlur(6)),
    "colour x0.6": lambda im: ImageEnhance.Color(im).enhance(0.6),
    "down 8x and up": lambda im: im.resize((im.width // 8, im.height // 8)).resize(im.size),
}


def main(argv=None):
    from evaluation.inception import InceptionFeatures, l2_normalize, max_cosine
    from inference.train_pool import train_banners

    cfg = knobs.configure(globals(), argv)
    _, paths = train_banners(cfg.DATA_DIR)
    paths = sorted(paths)
    random.Random(cfg.SEED).shuffle(paths)
    paths = paths[:cfg.N]
    if len(paths) < 2:
        raise knobs.InputError(f"N={cfg.N}: the calibration needs at least 2 training banners ({len(paths)} found)")
    extractor = InceptionFeatures(device=devices.pick_device())
    feats = l2_normalize(extractor(paths, progress="inception features"))
    nearest, _ = max_cosine(feats, feats, exclude=np.arange(len(feats)), pool_normalized=True)  # each banner's nearest OTHER one
    p50, p90, p99 = np.percentile(nearest, [50, 90, 99])
    print(f"{len(paths)} distinct training banners, cosine to the nearest other one: median {p50:.3f}, "
          f"90th pct {p90:.3f}, 99th pct {p99:.3f}, max {nearest.max():.3f}")
    originals = [images.load_rgb(p) for p in paths[:cfg.N_COPIES]]
    for name, transform in NEAR_COPIES.items():
        copies = l2_normalize(extractor([transform(im) for im in originals]))
        cos = (copies * feats[:cfg.N_COPIES]).sum(axis=1)
        print(f"near-copy '{name}' vs its original: mean {cos.mean():.3f}, min {cos.min():.3f} ({cfg.N_COPIES} banners)")


if __name__ == "__main__":
    knobs.run_main(main)
