"""
Legibility by OCR: renders N rows' copy with the text layer, writes each banner as the pipeline does (JPEG), and reads
it back with Tesseract's Vietnamese model two ways:
- whole banner, as a reader or a crawler meets it: Tesseract's default page segmentation (PAGE_PSM 3), no crop; the
  figure is the recall of the headline's first RECALL_WORDS words (each found among the words read, case and
  surrounding punctuation ignored), averaged over the rows;
- the headline's own crop (its lines' box plus a margin) read as one block (`--psm 6`); the figure is the character
  error rate (edit distance / reference length, over all rows).

Backgrounds:
- `clean`: white.
- `noise`: uniform random pixels, the harshest case (every pixel an edge).
- `smoke`: the banners of SMOKE_DIR (e.g. a SMOKE=1 run's output folder: blotchy colour noise from tiny random
  models), one per row in turn; skipped when SMOKE_DIR is "".
- `real`: real banners. Each row is set on another sampled row's banner (REAL_BANNER=other: the banner's own copy,
  already written on it, must not be what the OCR finds) or on its own (own), or on its rank-1 retrieved training
  banner (RETRIEVAL=a retrieval.csv: Method 1's init banner). That banner is also the layout banner
  (`layout_from`, as Method 1 passes its init banner), so the headline covers its largest text block. The report
  then prints the share of the banner's text area (found by COVER_DETECTOR) that the copy's block covers with this
  layout and with the calm-box rule.

Needs the tesseract binary and its Vietnamese data, which this script does not install (Debian):
    bash run/ocr_setup.sh        # apt-get install -y tesseract-ocr tesseract-ocr-vie
    python -m inference.text_layer_ocr --DATA_DIR=../shared/zac2023 --N=50 [--SMOKE_DIR=...] [--SAVE_DIR=outputs/ocr]
"""
import collections
import shutil
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image

from core import dataset, images, knobs, seeds
from core.copy_text import normalize_copy
from core.progress import progress
from inference import text_layer, text_regions

DATA_DIR = "data"  # the data folder; its train/info.csv and train/images/ are read unless INFO/IMAGES_DIR are set
INFO = ""  # info.csv whose rows give the copy ("" = $DATA_DIR/train/info.csv)
IMAGES_DIR = ""  # real banners, named by bannerImage ("" = images/ beside INFO; with RETRIEVAL: the training images)
N = 50  # rows, a deterministic sample by (SEED, id)
SEED = 0  # which rows and which noise
BACKGROUNDS = ("clean", "noise", "smoke", "real")  # any of clean, noise, smoke, real
SMOKE_DIR = ""  # banners for the `smoke` background (a SMOKE=1 output folder), used in turn; "" skips `smoke`
REAL_BANNER = "other"  # `real` background: other (the next sampled row's banner) or own (the row's own banner)
RETRIEVAL = ""  # a retrieval.csv: the `real` background is each row's rank-1 training banner instead (Method 1's init)
LAYOUT = True  # `real`: the background banner is also the layout banner (the headline covers its largest text block)
COVER_DETECTOR = "tesseract"  # finds the text area whose coverage is reported (edges or tesseract: independent of
                              # the text layer's own TEXT_DETECTOR when they differ)
TESSERACT = "tesseract"  # the binary
LANG = "vie"  # Tesseract language model
PSM = 6  # crop reading: page segmentation mode 6 = one uniform block of text
PAGE_PSM = 3  # whole-banner reading: 3 = Tesseract's default, fully automatic page segmentation
RECALL_WORDS = 6  # the headline's first words looked for in the whole-banner reading
LAYER_ARGS = ""  # the text layer's own flags for this report, e.g. "--TEXTURE_MAX=0.05 --TEXT_DETECTOR=tesseract"
SAVE_DIR = ""  # if set, every rendered banner and headline crop is saved here (to look at the failures)
SMOKE_OVERRIDES = dict(N=5)


def headline_box(layout, margin=12):
    """The ink box of the headline lines (the first group's lines at the headline size) with a margin, kept inside
    the panel when there is one (the pixels beyond it are the banner's, not the layer's)."""
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
    """What the CER compares: the copy rule (NFC, spaces collapsed), "…" as the three dots Tesseract reads it as."""
    return normalize_copy(text.replace("…", "..."))


def words(text):
    """Lower-cased words with the punctuation around them removed (`Giảm 50%,` -> `giảm`, `50%`)."""
    out = []
    for word in cer_text(text).lower().split(" "):
        while word and unicodedata.category(word[0])[0] in "PS":
            word = word[1:]
        while word and unicodedata.category(word[-1])[0] in "PS" and word[-1] != "%":
            word = word[:-1]
        if word:
            out.append(word)
    return out


def recall(reference, hypothesis, n):
    """The share of `reference`'s first `n` words found among `hypothesis`'s words (each found word used once)."""
    wanted = words(reference)[:n]
    found = collections.Counter(words(hypothesis))
    hits = 0
    for word in wanted:
        if found[word] > 0:
            found[word] -= 1
            hits += 1
    return hits / len(wanted) if wanted else 1.0


def ocr(image, cfg, psm):
    """Tesseract's reading of an RGB PIL image."""
    return text_regions.run_tesseract(image, cfg.TESSERACT, cfg.LANG, "--psm", str(psm))


def background(kind, i, rows, cfg, sources):
    """(background image, layout banner path or None) for the i-th sampled row."""
    if kind == "clean":
        return Image.new("RGB", images.BANNER_SIZE, "white"), None
    if kind == "noise":
        rng = np.random.default_rng(seeds.row_seed(cfg.SEED, rows[i].id))
        return Image.fromarray(rng.integers(0, 256, (images.BANNER_SIZE[1], images.BANNER_SIZE[0], 3), np.uint8)), None
    if kind == "smoke":
        return images.load_rgb(sources["smoke"][i % len(sources["smoke"])]), None
    if kind == "real":
        path = sources["real"][i]
        return images.load_rgb(path), (path if cfg.LAYOUT else None)
    raise knobs.InputError(f"BACKGROUNDS: unknown background {kind!r} (clean, noise, smoke, real)")


def background_sources(cfg, rows, images_dir):
    """{"smoke": [banner paths], "real": [one banner path per sampled row]}."""
    out = {"smoke": sorted(p for p in Path(cfg.SMOKE_DIR).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
           if cfg.SMOKE_DIR else []}
    if cfg.SMOKE_DIR and not out["smoke"]:
        raise knobs.InputError(f"SMOKE_DIR {cfg.SMOKE_DIR}: no .jpg/.png banners there")
    if cfg.RETRIEVAL:
        ranked = dataset.read_retrieval(cfg.RETRIEVAL, [r.id for r in rows])
        out["real"] = [images_dir / ranked[r.id][0] for r in rows]
    elif cfg.REAL_BANNER in ("other", "own"):
        shift = 1 if cfg.REAL_BANNER == "other" else 0
        out["real"] = [images_dir / rows[(i + shift) % len(rows)].bannerImage for i in range(len(rows))]
    else:
        raise knobs.InputError(f"REAL_BANNER: {cfg.REAL_BANNER!r} is not other or own")
    return out


def read_back(written, layout, cfg):
    """(headline reference, crop reading, whole-banner reading) of a written banner."""
    ref = " ".join(ln.text for ln in layout.groups[0].lines if ln.size == layout.groups[0].lines[0].size)
    return ref, ocr(written.crop(headline_box(layout)), cfg, cfg.PSM), ocr(written, cfg, cfg.PAGE_PSM)


def covered(layout):
    """The boxes the copy's block takes (headline panel, badge)."""
    return [layout.groups[0].box] + ([layout.badge.box] if layout.badge else [])


def coverage(source, layout, calm, cfg, tl_cfg):
    """(share of the layout banner's text area the copy covers with `layout`, with the calm-box rule's `calm`), or
    None when COVER_DETECTOR finds no text on the banner."""
    blocks = text_regions.cached_blocks([source], cfg.COVER_DETECTOR, tl_cfg.REGION_CACHE, cfg.TESSERACT)[0]
    if not blocks:
        return None
    return text_regions.covered_share(blocks, covered(layout)), text_regions.covered_share(blocks, covered(calm))


def measure(rows, cfg, sources, tl_cfg, save):
    """{background: {"edits", "chars", "recall": [..], "cover": [..], "worst": [..]}} over the rows."""
    from torchmetrics.functional.text import edit_distance

    kinds = [k for k in cfg.BACKGROUNDS if k != "smoke" or sources["smoke"]]
    out = {k: {"edits": 0, "chars": 0, "recall": [], "cover": [], "placed": [], "worst": []} for k in kinds}
    for i, row in enumerate(progress(rows, desc="OCR", unit="row")):
        copy = text_layer.extract_copy(row, tl_cfg)
        for kind in kinds:
            image, source = background(kind, i, rows, cfg, sources)
            rendered, layout = text_layer.render(image, copy, tl_cfg, row.id, source)
            written = images.decode_image(images.banner_jpeg(rendered))
            ref, crop_text, page_text = read_back(written, layout, cfg)
            errors = int(edit_distance([cer_text(crop_text)], [cer_text(ref)], reduction="sum"))
            stats = out[kind]
            stats["edits"] += errors
            stats["chars"] += len(cer_text(ref))
            stats["recall"].append(recall(ref, page_text, cfg.RECALL_WORDS))
            if source:
                calm = text_layer.render(image, copy, tl_cfg, row.id)[1]
                stats["cover"].append(coverage(source, layout, calm, cfg, tl_cfg))
                stats["placed"].append(layout.region == "text block")
            stats["worst"].append((stats["recall"][-1], errors / max(len(ref), 1), row.id, ref, page_text))
            if save:
                save.mkdir(parents=True, exist_ok=True)
                images.save_banner(written, save, f"{kind}_{row.id}.jpg")
    return out


def report(out, cfg, n_rows, info_path):
    print(f"{n_rows} rows of {info_path}, Tesseract {cfg.LANG}: whole banner (psm {cfg.PAGE_PSM}, no crop) recall of "
          f"the headline's first {cfg.RECALL_WORDS} words; headline crop (psm {cfg.PSM}) character error rate")
    for kind, s in out.items():
        rate, target = s["edits"] / max(s["chars"], 1), 0.02 if kind == "clean" else 0.05
        rec = np.array(s["recall"])
        line = (f"  {kind:6s} whole-banner recall {rec.mean():.3f} (rows under 0.5: {int((rec < 0.5).sum())}; "
                f"none found: {int((rec == 0).sum())})   crop CER {100 * rate:.2f} % ({s['edits']} / {s['chars']}; "
                f"target <= {100 * target:.0f} %{'' if rate <= target else ': MISSED'})")
        print(line)
        shares = [c for c in s["cover"] if c is not None]
        if s["placed"]:
            print(f"         headline on the layout banner's text block in {sum(s['placed'])} of {len(s['placed'])} "
                  f"rows (the others: no usable block, calm box)")
        if shares:
            with_layout, calm = np.array(shares).mean(axis=0)
            print(f"         share of the layout banner's text area ({cfg.COVER_DETECTOR}; {len(shares)} banners with "
                  f"text) under the copy: {100 * with_layout:.1f} % with the layout, {100 * calm:.1f} % with the "
                  f"calm-box rule")
    for kind, s in out.items():
        for rec, cer, row_id, ref, hyp in sorted(s["worst"], key=lambda w: (w[0], -w[1]))[:3]:
            if rec < 1:
                print(f"  worst {kind} id={row_id}: recall {rec:.2f}, crop CER {100 * cer:.1f} %\n    ref: {ref}\n"
                      f"    ocr: {' '.join(hyp.split())[:160]}")


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    knobs.announce_smoke("text layer OCR", cfg.SMOKE)
    if shutil.which(cfg.TESSERACT) is None:
        raise knobs.InputError(f"{cfg.TESSERACT} not found: bash run/ocr_setup.sh (apt-get install -y tesseract-ocr "
                               f"tesseract-ocr-vie)")
    info_path = Path(cfg.INFO) if cfg.INFO else dataset.split_dir("train", cfg.DATA_DIR) / "info.csv"
    images_dir = Path(cfg.IMAGES_DIR) if cfg.IMAGES_DIR else (
        dataset.split_dir("train", cfg.DATA_DIR) / "images" if cfg.RETRIEVAL else info_path.parent / "images")
    info = dataset.read_info(info_path)
    rows = sorted(info.itertuples(), key=lambda r: seeds.row_seed(cfg.SEED, r.id))[:cfg.N]
    tl_cfg = knobs.configure(text_layer, cfg.LAYER_ARGS.split(), env={})
    sources = background_sources(cfg, rows, images_dir)
    if "real" in cfg.BACKGROUNDS and cfg.LAYOUT:  # found once, cached: the timing below is the layer's own
        text_layer.layout_blocks(sorted(set(sources["real"])), tl_cfg, desc="text regions (cached)")
    out = measure(rows, cfg, sources, tl_cfg, Path(cfg.SAVE_DIR) if cfg.SAVE_DIR else None)
    report(out, cfg, len(rows), info_path)


if __name__ == "__main__":
    knobs.run_main(main)
