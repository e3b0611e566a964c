"""
Seconds per image of each part of scoring, measured cold (no cache) on N real banners, so the cost of scoring a new
prediction folder can be predicted:  python -m bench.evaluation --DATA_DIR=/work/shared/zac2023 [--N=32]

Prints: PSNR+SSIM per pair, Inception features per image (model load excluded), the FID (exact SVD route)
once per set, a gallery thumbnail per image, and the resulting cold cost per row (pixel metrics + 2 Inception passes:
prediction and ground truth; the training pool is paid once per training set and then cached).
"""
import time

import numpy as np

from core import dataset, devices, knobs
from core.images import load_rgb

DATA_DIR = "data"  # dataset whose train/images are timed (also from env DATA_DIR)
N = 32  # images timed (pairs are image i vs image i+1)
DEVICE = "auto"  # auto | cpu | cuda
THUMB_WIDTH = 384  # gallery image width, as evaluation.evaluate embeds them


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    from evaluation import metrics
    from evaluation.gallery import thumbnail
    from evaluation.inception import InceptionFeatures

    images = dataset.split_dir("train", cfg.DATA_DIR) / "images"
    if not images.is_dir():
        raise knobs.InputError(f"{images}: not a folder (pass --DATA_DIR=<data folder with train/images>)")
    paths = sorted(p for p in images.iterdir() if not p.name.startswith("."))[:cfg.N + 1]
    if len(paths) < 3:
        raise knobs.InputError(f"{images}: need at least 3 images")
    n = len(paths) - 1
    t = time.time()
    for a, b in zip(paths[:-1], paths[1:]):
        x, y = np.asarray(load_rgb(a)), np.asarray(load_rgb(b))
        metrics.psnr(x, y), metrics.ssim(x, y)
    pixel = (time.time() - t) / n
    extractor = InceptionFeatures(device=devices.pick_device(cfg.DEVICE))
    extractor(paths[:2])  # warm-up: the first TorchScript call optimises the graph
    t = time.time()
    feats = extractor(paths[:n])
    inception = (time.time() - t) / n
    t = time.time()
    metrics.fid(feats[: n // 2], feats[n // 2:])
    fid = time.time() - t
    t = time.time()
    for p in paths[:n]:
        thumbnail(p, cfg.THUMB_WIDTH)
    thumb = (time.time() - t) / n
    print(f"images: {n} from {images} (device {devices.pick_device(cfg.DEVICE)})")
    print(f"psnr+ssim per pair        {pixel:.3f} s")
    print(f"inception per image       {inception:.3f} s")
    print(f"fid per set (2048-d, SVD) {fid:.3f} s")
    print(f"gallery thumbnail / image {thumb:.3f} s")
    print(f"cold scoring per row      {pixel + 2 * inception + 3 * thumb:.3f} s  (+ {inception:.3f} s per training banner, once)")


if __name__ == "__main__":
    knobs.run_main(main)
