"""
Where a banner's text is: the text blocks of a banner (its lines grouped into blocks), for the text layer's layout
(the headline goes where the retrieved / nearest training banner's largest text block was, covering the pseudo-letters
a repaint leaves there).

Two detectors, chosen by the text layer's TEXT_DETECTOR knob:
- `edges` (default; numpy + scipy, nothing to install): character candidates are the connected components of pixels
  clearly lighter or darker than their neighbourhood, kept when shaped like a glyph (height, aspect, fill); candidates
  of similar height on a common line, close to each other, are chained into lines; a line needs several of them and
  the shape of a line of text (wider than tall).
- `tesseract` (needs the binary: bash run/ocr_setup.sh): Tesseract's own word boxes (default page segmentation,
  Vietnamese model), words read with confidence >= 60 and at least two letters or digits, joined into lines.
Either way lines are grouped into blocks (lines close above one another), and blocks are returned largest first.

Regions are computed once per banner CONTENT (sha256 of the file) and detector, and cached in one JSON file
(`{detector tag: {sha256: [[x0, y0, x1, y1], ...]}}`, boxes in 1024x533 banner pixels), like the evaluation's Inception
features: a training pool is scanned once, a copied or renamed banner costs nothing.
"""
import functools
import subprocess
from pathlib import Path

import numpy as np

from core import files, images, knobs
from core.progress import progress

DETECTORS = ("edges", "tesseract")
EDGES_VERSION = "edges-1"  # bump when the detector changes: its cached regions are then recomputed
WORK_WIDTH = 512  # the edges detector works at this width (half the banner): faster, and JPEG noise averages out
# (neighbourhood a pixel is compared with, the candidate heights it finds), px at WORK_WIDTH: a glyph must be smaller
# than its neighbourhood to stand out of it, so big type is looked for against a wider one
LOCAL_SCALES = ((15, (5, 14)), (41, (12, 48)))
LOCAL_DIFF = 28  # a glyph pixel differs from its neighbourhood's mean by at least this (0..255)
STROKE_MAX = 0.4  # a glyph's thickest stroke is at most this share of its height (DejaVu Bold: ~0.2)
MIN_GLYPHS = 4  # a line holds at least this many candidates
TESS_MIN_CONF = 60  # tesseract words read with less confidence are not text


# ----------------------------------------------------------------------------------------------------------------------
# lines -> blocks


def group_lines(lines, gap=0.9, min_fill=0.3):
    """Text lines [(x0, y0, x1, y1)] grouped into blocks: two lines join when their heights are within a factor 2,
    the vertical gap between them is at most `gap` x the taller one's height, and they overlap horizontally. A block
    whose lines fill less than `min_fill` of its box is split back into its lines (lines that happen to stack are
    not a paragraph). Blocks (union boxes), the most text first (the summed area of their lines)."""
    lines = sorted((tuple(b) for b in lines), key=lambda b: (b[1], b[0]))
    root, join = _union_find(len(lines))
    for i, a in enumerate(lines):
        for j in range(i + 1, len(lines)):
            b = lines[j]
            ha, hb = a[3] - a[1], b[3] - b[1]
            near = b[1] - a[3] <= gap * max(ha, hb) and a[1] - b[3] <= gap * max(ha, hb)
            if near and max(ha, hb) <= 2 * min(ha, hb) and min(a[2], b[2]) > max(a[0], b[0]):
                join(i, j)
    groups = {}
    for i, box in enumerate(lines):
        groups.setdefault(root(i), []).append(box)
    blocks = []
    for members in groups.values():
        box = (min(b[0] for b in members), min(b[1] for b in members), max(b[2] for b in members),
               max(b[3] for b in members))
        text = sum(area(b) for b in members)
        blocks += [(text, box)] if text >= min_fill * area(box) else [(area(b), b) for b in members]
    return [box for _, box in sorted(blocks, key=lambda t: -t[0])]


def _union_find(n):
    """(root(i), join(i, j)) over n items: the groups that pairwise joins make."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i, j):
        parent[root(j)] = root(i)

    return root, join


def area(box):
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


# ----------------------------------------------------------------------------------------------------------------------
# the edges detector


def _glyph_candidates(gray):
    """[(x0, y0, x1, y1)] of components clearly lighter or darker than their neighbourhood, shaped like glyphs."""
    from scipy import ndimage

    out = []
    for local_px, (lo, hi) in LOCAL_SCALES:
        local = ndimage.uniform_filter(gray, local_px)
        out += _shaped(((gray - local > LOCAL_DIFF), (local - gray > LOCAL_DIFF)), lo, hi)
    return out


def _shaped(masks, lo, hi):
    """Boxes of the components of each mask shaped like a glyph: height in [lo, hi], not too wide or thin, partly
    filled, and drawn with strokes (the thickest stroke at most STROKE_MAX x the height: solid blobs, panels and
    tiles are not letters)."""
    from scipy import ndimage

    out = []
    for mask in masks:
        labels, n = ndimage.label(mask)
        if n == 0:
            continue
        counts = np.bincount(labels.ravel(), minlength=n + 1)
        # half the thickest stroke of each component: the largest distance from one of its pixels to the outside
        thickest = ndimage.maximum(ndimage.distance_transform_edt(mask), labels, np.arange(1, n + 1))
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            fill = counts[i] / (h * w)
            if (lo <= h <= hi and 0.08 * h <= w <= 2.0 * h and 0.12 <= fill <= 0.95
                    and 2 * thickest[i - 1] <= STROKE_MAX * h + 1):
                out.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return out


def _chain(cands):
    """Candidates chained into text lines: neighbours on one line (heights within a factor 1.6, vertical centres within
    half a height, horizontal gap under one height). A line keeps MIN_GLYPHS or more candidates, is at least 2.5 times
    as wide as tall, and its candidates' heights vary little."""
    if not cands:
        return []
    c = np.asarray(cands, dtype=np.float64)
    c = c[np.argsort(c[:, 0])]
    h, cy = c[:, 3] - c[:, 1], (c[:, 1] + c[:, 3]) / 2
    root, join = _union_find(len(c))
    for i in range(len(c)):
        for j in range(i + 1, len(c)):
            gap = c[j, 0] - c[i, 2]
            if c[j, 0] - c[i, 0] > 4 * max(h[i], h[j]) + 48:
                break
            hi, lo = max(h[i], h[j]), min(h[i], h[j])
            if gap < hi and hi <= 1.6 * lo and abs(cy[i] - cy[j]) <= 0.5 * lo:
                join(i, j)
    roots = np.array([root(i) for i in range(len(c))])
    lines = []
    for r in np.unique(roots):
        members = c[roots == r]
        if len(members) >= MIN_GLYPHS and _is_line(members):
            lines.append((members[:, 0].min(), members[:, 1].min(), members[:, 2].max(), members[:, 3].max()))
    return lines


def _is_line(members):
    """Do these chained candidates look like a line of text: wider than tall, glyphs of one height standing on one
    baseline (or hanging from one top line: capitals, marks), covering much of the line's width?"""
    x0, y0, x1, y1 = members[:, 0].min(), members[:, 1].min(), members[:, 2].max(), members[:, 3].max()
    h = members[:, 3] - members[:, 1]
    med = np.median(h)
    covered = np.zeros(int(x1 - x0) + 1, bool)
    for a, b in members[:, [0, 2]] - x0:
        covered[int(a):int(b)] = True
    aligned = min(np.std(members[:, 3]), np.std(members[:, 1])) <= 0.2 * med
    return x1 - x0 >= 2.5 * (y1 - y0) and h.std() <= 0.3 * h.mean() and aligned and covered.mean() >= 0.45


def detect_edges(image):
    """Text lines of `image` (any size) by the edges detector, in 1024x533 banner pixels."""
    banner = images.to_banner(image)
    small = banner.convert("L").resize((WORK_WIDTH, round(WORK_WIDTH * banner.height / banner.width)))
    gray = np.asarray(small, dtype=np.float64)
    s = banner.width / WORK_WIDTH
    return [tuple(int(round(v * s)) for v in box) for box in _chain(_glyph_candidates(gray))]


# ----------------------------------------------------------------------------------------------------------------------
# the tesseract detector


def run_tesseract(image, binary, lang, *args):
    """Tesseract's stdout for a PIL image (PNG through stdin): the one call of the text detector and the OCR report; a
    missing binary, a failure or a hang is one line."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    try:
        result = subprocess.run([binary, "stdin", "stdout", "-l", lang, *args], input=buf.getvalue(),
                                capture_output=True, timeout=120)
    except FileNotFoundError:
        raise knobs.InputError(f"TEXT_DETECTOR=tesseract: {binary} not found (bash run/ocr_setup.sh, or "
                               f"--TEXT_DETECTOR=edges)") from None
    except subprocess.TimeoutExpired:
        raise knobs.InputError(f"{binary} did not answer within 120 s on one banner") from None
    if result.returncode != 0:
        raise knobs.InputError(f"tesseract failed: {result.stderr.decode(errors='replace').strip()[:300]}")
    return result.stdout.decode("utf-8", errors="replace")


def detect_tesseract(image, binary="tesseract", lang="vie"):
    """Text lines of `image` from Tesseract's word boxes (default page segmentation), in 1024x533 banner pixels."""
    lines = {}
    for row in run_tesseract(images.to_banner(image), binary, lang, "tsv").splitlines()[1:]:
        f = row.split("\t")
        if len(f) < 12 or f[0] != "5" or float(f[10]) < TESS_MIN_CONF or sum(ch.isalnum() for ch in f[11]) < 2:
            continue
        x, y, w, h = map(int, f[6:10])
        key = tuple(f[2:5])  # block, paragraph, line
        x0, y0, x1, y1 = lines.get(key, (x, y, x + w, y + h))
        lines[key] = (min(x0, x), min(y0, y), max(x1, x + w), max(y1, y + h))
    return list(lines.values())


# ----------------------------------------------------------------------------------------------------------------------
# cache by content


def detector_tag(detector):
    if detector not in DETECTORS:
        raise knobs.InputError(f"TEXT_DETECTOR: unknown detector {detector!r} (one of {', '.join(DETECTORS)})")
    if detector == "edges":
        return f"{EDGES_VERSION}|{WORK_WIDTH}|{LOCAL_SCALES}|{LOCAL_DIFF}|{STROKE_MAX}|{MIN_GLYPHS}"
    return f"tesseract-vie|conf{TESS_MIN_CONF}"


def find_blocks(image, detector, tesseract="tesseract"):
    """Text blocks of a PIL image, largest first, [(x0, y0, x1, y1)] in 1024x533 banner pixels (no cache)."""
    detector_tag(detector)
    lines = detect_edges(image) if detector == "edges" else detect_tesseract(image, tesseract)
    return group_lines(lines)


@functools.lru_cache(maxsize=4)
def _store(path):
    return files.JsonStore(path, every=16)


def cached_blocks(paths, detector, cache_path, tesseract="tesseract", desc=None):
    """Text blocks of each banner file in `paths` (a list of lists, in order), computed only for contents not yet in
    the cache file `cache_path`; `desc` labels a progress bar over the new ones."""
    tag, store = detector_tag(detector), _store(str(Path(cache_path).resolve()))
    table = store.data.setdefault(tag, {})
    hashes = [files.content_hash(p) for p in paths]
    todo = {h: p for h, p in zip(hashes, paths) if h not in table}
    try:  # a failure on one banner (a bad file, tesseract) keeps the blocks found before it
        for h, p in progress(list(todo.items()), desc=desc or "text regions", unit="img", disable=desc is None):
            table[h] = [list(b) for b in find_blocks(images.load_rgb(p), detector, tesseract)]
            store.put(tag, table)  # saved every 16 new banners: a kill loses little
    finally:
        if todo:
            store.save()
    return [[tuple(b) for b in table[h]] for h in hashes]


def covered_share(blocks, boxes, size=images.BANNER_SIZE):
    """The share of the union of `blocks` that the union of `boxes` covers (1.0 when `blocks` is empty)."""
    target, cover = np.zeros(size[::-1], bool), np.zeros(size[::-1], bool)
    for mask, rects in ((target, blocks), (cover, boxes)):
        for x0, y0, x1, y1 in rects:
            mask[max(0, int(y0)):max(0, int(y1)), max(0, int(x0)):max(0, int(x1))] = True
    return float((target & cover).sum() / target.sum()) if target.any() else 1.0
