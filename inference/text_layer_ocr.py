"""
Legibility by OCR: renders N rows' copy with the text layer and reads the headline back with Tesseract's Vietnamese
model; prints the headline character error rate (edit distance / reference length, over all rows) per background.

Backgrounds: `clean` (white), `noise` (random pixels, like SMOKE=1 outputs), `real` (the row's own banner from
IMAGES_DIR; real banners already carry text, so only the headline's own crop is read). Each render goes through the
banner JPEG first, then the headline lines' box (plus a margin) is cut out and read with `--psm 6` (a block of text).
Targets: <= 2 % clean, <= 5 % on real banners and noise.

Needs the tesseract binary and its Vietnamese data, which this script does not install (Debian):
    bash run/ocr_setup.sh        # apt-get install -y tesseract-ocr tesseract-ocr-vie
    python -m inference.text_layer_ocr --DATA_DIR=../shared/zac2023 --N=50 [--SAVE_DIR=outputs/ocr]
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from core import dataset, images, knobs, seeds
from core.copy_text import normalize_copy
from core.progress import progress
from inference import text_layer

DATA_DIR = "data"  # the data folder; its train/info.csv and train/images/ are read unless INFO/IMAGES_DIR are set
INFO = ""  # info.csv whose rows give the copy ("" = $DATA_DIR/train/info.csv)
IMAGES_DIR = ""  # banners used as `real` backgrounds, named by bannerImage ("" = images/ beside INFO)
N = 50  # rows, a deterministic sample by (SEED, id)
SEED = 0  # which rows and which noise
BACKGROUNDS = ("clean", "noise", "real")  # any of clean, noise, real
TESSERACT = "tesseract"  # the binary
LANG = "vie"  # Tesseract language model
PSM = 6  # page segmentation mode: 6 = one uniform block of text
SAVE_DIR = ""  # if set, every rendered banner and headline crop is saved here (to look at the failures)
SMOKE_OVERRIDES = dict(N=5)


def headline_box(layout, margin=12):
    """The ink box of the headline lines (the first group's lines at the headline size) with a margin, kept inside
    the scrim when there is one (the pixels beyond it are the banner's, not the layer's)."""
    head = layout.groups[0].lines
    boxes = []
    for line in head:
        if line.size != head[0].size:
            break
        x0, y0, x1, y1 = text_layer.load_font(line.font, line.size).getbbox(line.text, anchor="ls")
        boxes.append((line.x + x0, line.y + y0, line.x + x1, line.y + y1))
    box = [min(b[0] for b in boxes) - margin, min(b[1] for b in boxes) - margin,
           max(b[2] for b in boxes) + margin, max(b[3] for b in boxes) + margin]
    if layout.groups[0].alpha > 0:
        scrim = layout.groups[0].box
        box = [max(box[0], scrim[0]), max(box[1], scrim[1]), min(box[2], scrim[2]), min(box[3], scrim[3])]
    return tuple(box)


def cer_text(text):
    """What the CER compares: NFC, whitespace collapsed, "…" as the three dots Tesseract reads it as."""
    return normalize_copy(text.replace("…", "..."))


def ocr(image, cfg):
    """Tesseract's reading of an RGB PIL image (PNG through stdin)."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    result = subprocess.run([cfg.TESSERACT, "stdin", "stdout", "-l", cfg.LANG, "--psm", str(cfg.PSM)],
                            input=buf.getvalue(), capture_output=True, timeout=120)
    if result.returncode != 0:
        raise knobs.InputError(f"tesseract failed: {result.stderr.decode(errors='replace').strip()[:300]}")
    return result.stdout.decode("utf-8", errors="replace")


def background(kind, row, cfg, images_dir):
    if kind == "clean":
        return Image.new("RGB", images.BANNER_SIZE, "white")
    if kind == "noise":
        rng = np.random.default_rng(seeds.row_seed(cfg.SEED, row.id))
        return Image.fromarray(rng.integers(0, 256, (images.BANNER_SIZE[1], images.BANNER_SIZE[0], 3), np.uint8))
    if kind == "real":
        return images.load_rgb(images_dir / row.bannerImage)
    raise knobs.InputError(f"BACKGROUNDS: unknown background {kind!r} (clean, noise, real)")


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    from torchmetrics.functional.text import edit_distance

    knobs.announce_smoke("text layer OCR")
    if shutil.which(cfg.TESSERACT) is None:
        raise knobs.InputError(f"{cfg.TESSERACT} not found: bash run/ocr_setup.sh (apt-get install -y tesseract-ocr "
                               f"tesseract-ocr-vie)")
    info_path = Path(cfg.INFO) if cfg.INFO else dataset.split_dir("train", cfg.DATA_DIR) / "info.csv"
    images_dir = Path(cfg.IMAGES_DIR) if cfg.IMAGES_DIR else info_path.parent / "images"
    info = dataset.read_info(info_path)
    rows = sorted(info.itertuples(), key=lambda r: seeds.row_seed(cfg.SEED, r.id))[:cfg.N]
    tl_cfg = text_layer.default_config()
    save = Path(cfg.SAVE_DIR) if cfg.SAVE_DIR else None
    totals, worst = {k: [0, 0] for k in cfg.BACKGROUNDS}, []
    for row in progress(rows, desc="OCR", unit="row"):
        copy = text_layer.extract_copy(row, tl_cfg)
        for kind in cfg.BACKGROUNDS:
            image, layout = text_layer.render(background(kind, row, cfg, images_dir), copy, tl_cfg, row.id)
            written = images.decode_image(images.banner_jpeg(image))
            crop = written.crop(headline_box(layout))
            ref = " ".join(ln.text for ln in layout.groups[0].lines if ln.size == layout.groups[0].lines[0].size)
            ref, hyp = cer_text(ref), cer_text(ocr(crop, cfg))
            errors = int(edit_distance([hyp], [ref], reduction="sum"))  # Levenshtein, in characters
            totals[kind][0] += errors
            totals[kind][1] += len(ref)
            if errors:
                worst.append((errors / len(ref), kind, row.id, ref, hyp))
            if save:
                save.mkdir(parents=True, exist_ok=True)
                images.save_banner(written, save, f"{kind}_{row.id}.jpg")
                crop.save(save / f"{kind}_{row.id}_headline.png")
    print(f"headline character error rate over {len(rows)} rows of {info_path} (Tesseract {cfg.LANG}, psm {cfg.PSM}):")
    for kind, (errors, chars) in totals.items():
        target = 0.02 if kind == "clean" else 0.05
        rate = errors / max(chars, 1)
        print(f"  {kind:6s} CER {100 * rate:.2f} %  ({errors} edits / {chars} chars; target <= {100 * target:.0f} %"
              f"{'' if rate <= target else ': MISSED'})")
    for rate, kind, row_id, ref, hyp in sorted(worst, key=lambda w: -w[0])[:8]:
        print(f"  worst: {kind} id={row_id} CER {100 * rate:.1f} %\n    ref: {ref}\n    ocr: {hyp}")


if __name__ == "__main__":
    knobs.run_main(main)
