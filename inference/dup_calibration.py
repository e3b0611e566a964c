"""
Where to put DUP_MAX: the duplication guard's similarity (Inception cosine) of DISTINCT training banners to their nearest
other training banner, measured as the guard measures a generated banner (against the WHOLE training pool), and of
simple near-copies (blur, desaturation, down-and-up scaling) to their original.

usage: python -m inference.dup_calibration --DATA_DIR=../shared/zac2023 [--N=0] [--CACHE_DIR=.cache/features]

The pool's features come from the content-keyed cache the guard and run/evaluate.sh fill (computed once, ~0.5 s a
banner on a CPU). A sample of the pool would understate the nearest similarity: fewer candidates, a lower maximum.
"""
import random

import numpy as np
from PIL import ImageEnhance, ImageFilter

from core import devices, images, knobs

DATA_DIR = "data"  # dataset root (also from env DATA_DIR)
N = 0  # training banners measured against the whole pool (0 = all of them)
N_COPIES = 30  # of those, how many get near-copies
SEED = 0  # which banners
CACHE_DIR = ".cache/features"  # the Inception features by content (shared with the guard and run/evaluate.sh)

NEAR_COPIES = {
    "blur radius 2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "blur radius 6": lambda im: im.filter(ImageFilter.GaussianBlur(6)),
    "colour x0.6": lambda im: ImageEnhance.Color(im).enhance(0.6),
    "down 8x and up": lambda im: im.resize((im.width // 8, im.height // 8)).resize(im.size),
}


def main(argv=None):
    from evaluation import duplication
    from evaluation.inception import InceptionFeatures, l2_normalize, max_cosine
    from inference.train_pool import cached_inception, train_banners

    cfg = knobs.configure(globals(), argv)
    _, paths = train_banners(cfg.DATA_DIR)
    if len(paths) < 2:
        raise knobs.InputError(f"{cfg.DATA_DIR}: the calibration needs at least 2 training banners ({len(paths)} found)")
    extractor = InceptionFeatures(device=devices.pick_device())
    pool = l2_normalize(cached_inception(paths, cfg.CACHE_DIR, extractor))
    order = list(range(len(paths)))
    random.Random(cfg.SEED).shuffle(order)
    chosen = np.array(sorted(order[:cfg.N] if cfg.N else order))
    # each chosen banner's nearest OTHER banner of the whole pool: what the guard sees for a banner like it
    nearest, _ = max_cosine(pool[chosen], pool, exclude=chosen, pool_normalized=True)
    p50, p90, p99 = np.percentile(nearest, [50, 90, 99])
    print(f"{len(chosen)} distinct training banners against all {len(paths)}, cosine to the nearest other one: median "
          f"{p50:.3f}, 90th pct {p90:.3f}, 99th pct {p99:.3f}, max {nearest.max():.3f}")
    for name, level in (("DUP_MAX (the guard)", duplication.DUP_MAX),
                        ("COMPETITION_FAIL (estimated)", duplication.COMPETITION_FAIL)):
        print(f"  over {name} {level}: {(nearest > level).mean():.1%} of them ({(nearest > level).sum()})")
    originals = [images.load_rgb(paths[i]) for i in chosen[:cfg.N_COPIES]]
    for name, transform in NEAR_COPIES.items():
        copies = l2_normalize(extractor([transform(im) for im in originals]))
        cos = (copies * pool[chosen[:cfg.N_COPIES]]).sum(axis=1)
        print(f"near-copy '{name}' vs its original: mean {cos.mean():.3f}, min {cos.min():.3f} ({len(originals)} "
              f"banners)")


if __name__ == "__main__":
    knobs.run_main(main)
