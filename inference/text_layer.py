"""
The ad copy on the banner: the row's own Vietnamese headline, a second line, a price/offer badge and the "not a
medicine" disclaimer, set in a real font on the final 1024x533 canvas. No weights, deterministic.

Order of a banner's life: generate -> post-process (optional) -> text layer -> JPEG. The layer goes last so the
post-processing's blend and padding never wash out the text, and its contrast is measured on the pixels it lies on.

- Content (`extract_copy`): every field read through the project's one copy rule (`core.copy_text.normalize_copy`:
  control and format characters such as U+0008, tab, U+200B removed or made spaces, whitespace runs and NBSP
  collapsed, NFC). Headline = caption shortened at a phrase boundary (never inside a word); second line =
  description (skipped when it is the disclaimer); badge = the first price or offer found by regex (`giảm 50%`,
  `chỉ 199.000đ`, `399k`, `0 đồng`, `2 triệu`); disclaimer = the field that says `... không phải là thuốc ...`.
- Font: DejaVu Sans (Bold for the headline and badge) from the pinned `matplotlib` wheel, found through its package
  folder, never from the system. Every visible character is checked against the font's cmap with fontTools: a
  missing one is an InputError naming the row id and the character, never a tofu box.
- Layout (`plan_layout`): with a layout banner (`render(..., layout_from=path)`: Method 1's init banner, Method 2's
  nearest training banner) the headline block goes where that banner's largest text block was (inference/
  text_regions.py, found once per banner content and cached), its panel covering the block (a repaint leaves
  pseudo-letters there); with none, or no usable block, the calmest of a few candidate boxes (left, right, top,
  bottom; edge density plus luminance spread). The font size is the largest that fits, lines break by measured width.
- Legibility (`_choose_treatment`): the background under the text is judged by its busiest tiles (TILE_PX), not its
  mean. A busy one is frosted (blurred under the panel, fading out around it); then the lightest panel is chosen,
  dark text on a light panel first, under which no tile under the text stays busier than TEXTURE_MAX and the WCAG
  contrast ratio against the worst tile of the glyphs' surroundings, measured on the composite pixels, is
  >= CONTRAST_MIN x CONTRAST_MARGIN (the margin absorbs the JPEG).

Use from code:  `image = text_layer.apply(image, row, text_layer.default_config(DISCLAIMER=False), layout_from=path)`.
As a pass over a folder of banners (resumable, atomic, exactly 1024x533 JPEGs):
    python -m inference.text_layer --IN_DIR=inference/method_1 --INFO=data/test/info.csv --OUT_DIR=outputs/m1_text \
        [--LAYOUT_CSV=inference/method_1/manifest.csv]   # each row's init banner places its headline
"""
import functools
import importlib.util
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core import dataset, files, images, knobs
from core.copy_text import normalize_copy
from core.errors import error_list
from core.progress import progress
from core import disclaimer as disclaimer_rule
from inference import text_regions

IN_DIR = ""  # script mode: folder of banners named by bannerImage
INFO = ""  # script mode: the info.csv whose rows give the copy (required: never guessed from IN_DIR)
OUT_DIR = "outputs/text_layer"  # script mode: where the banners with text go
FONT_BOLD = ""  # TTF for headline and badge; "" = DejaVuSans-Bold.ttf from the pinned matplotlib package
FONT_REGULAR = ""  # TTF for the second line and the disclaimer; "" = DejaVuSans.ttf from matplotlib
HEADLINE_MAX_CHARS = 60  # a longer caption is cut at the last phrase boundary before this (0 = never cut)
HEADLINE_MAX_LINES = 3  # the headline wraps onto at most this many lines
HEADLINE_PX = (64, 22)  # largest and smallest headline size tried, px
SUBLINE = True  # a second line from the description
SUBLINE_MAX_CHARS = 70  # cut like the headline (0 = never cut)
SUBLINE_MAX_LINES = 2
SUBLINE_SCALE = 0.55  # second line size / headline size
BADGE = True  # a price or offer found in the copy, on a solid badge
BADGE_SCALE = 0.7  # badge text size / headline size
BADGE_FILL = (192, 32, 32)  # badge colour (white text on it: contrast 6.05; must reach CONTRAST_MIN x MARGIN)
DISCLAIMER = True  # the "not a medicine" line in small type at the bottom, when the copy has one
DISCLAIMER_PX = 16  # its size, px
MARGIN = 48  # px between the text and the canvas edge (the panel's padding comes out of it)
CONTRAST_MIN = 4.5  # WCAG AA for normal text, against the worst part of the background (see TILE_PX)
CONTRAST_MARGIN = 1.25  # plan for this much more, measured before the JPEG (the JPEG's ringing eats some)
TILE_PX = 24  # the background around the text is judged tile by tile: its worst tile counts, not its mean
TEXTURE_MAX = 0.03  # the most luminance spread (std, 0..1) any tile under the text may keep: a busier background gets
                    # a frosted panel (blurred, then dimmed) until it is this calm (readers and OCR see clean strokes)
PANEL_PAD = 0.8  # the panel reaches this far beyond the text, x the headline size (a reader, and an OCR's page
                  # analysis, must see the text block apart from the picture around it)
FROST_PX = 12  # blur radius of the frosted panel over a busy background, px
HALO_PX = 64  # the frost fades out over this many px beyond the panel: busy detail stays away from the text block
JPEG_CHECK = True  # script mode: re-measure each written JPEG and fail the row if it fell below CONTRAST_MIN
LAYOUT = True  # given a layout banner (Method 1: the init banner; Method 2: the nearest training banner), the headline
               # goes where that banner's largest text block was, covering it; else (or with none) the calmest box
TEXT_DETECTOR = "edges"  # finds the layout banner's text: edges (numpy/scipy, nothing to install) or tesseract
                         # (bash run/ocr_setup.sh); inference/text_regions.py
TESSERACT = "tesseract"  # the binary, for TEXT_DETECTOR=tesseract
REGION_CACHE = ".cache/features/text_regions.json"  # text blocks by banner content and detector, found once
REGION_MIN_AREA = 0.012  # a text block covering less of the canvas than this is not used (calm box instead)
REGION_MAX_GROW = 0.62  # the box grown around a text block to fit the copy stays within this share of each side
LAYOUT_CSV = ""  # script mode: per-row layout banners: a CSV with id and init_bannerImage (Method 1's manifest.csv)
                 # or train_bannerImage (retrieval.csv, rank 1 used); "" = the calm box for every row
LAYOUT_IMAGES = ""  # script mode: the folder of those banners ("" = $DATA_DIR/train/images)
DATA_DIR = "data"  # script mode: only to find LAYOUT_IMAGES' default

SCRIM_ALPHAS = (0.0, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0)  # scrim opacities tried in order until the contrast holds

# candidate boxes as fractions of the canvas (x0, y0, x1, y1) and how text aligns in them; ties go to the first
_REGIONS = (("left", (0.0, 0.0, 0.46, 1.0), "left"), ("right", (0.54, 0.0, 1.0, 1.0), "left"),
           ("top", (0.0, 0.0, 1.0, 0.4), "center"), ("bottom", (0.0, 0.6, 1.0, 1.0), "center"))
_WHITE, _INK = (255, 255, 255), (17, 17, 17)
_SUBLINE_GAP = 0.25  # space between headline and second line / headline size

DISCLAIMER_RE = disclaimer_rule.PATTERN  # the one rule, shared with the prompt fitter (core/disclaimer.py)
_UNIT = r"(?:%|k|đ|₫|vnđ|vnd|đồng|triệu|tr|nghìn|ngàn|tỷ)(?!\w)"  # "1 đến" is not "1 đ"
_AMOUNT = rf"\d+(?:[.,]\d+)*\s?{_UNIT}|\d{{1,3}}(?:[.,]\d{{3}})+(?![\d.,]*\w)"
_KEYWORD = (r"giảm(?:\s+giá)?|sale(?:\s+off)?|ưu\s+đãi|khuyến\s+mãi|chiết\s+khấu|đồng\s+giá|trả\s+góp|lãi\s+suất"
            r"|giá|chỉ|còn|off")
_FILLER = r"(?:\s+(?:ngay|đến|tới|lên|còn|từ|với|chỉ|giá|sốc|có|only|upto|up\s+to))*"
OFFER_RE = re.compile(rf"(?<!\w)(?:{_KEYWORD}){_FILLER}\s+(?:{_AMOUNT})", re.I)
PRICE_RE = re.compile(rf"(?<![\w.,])\d+(?:[.,]\d+)*\s?(?!%){_UNIT}", re.I)
# a phrase ends after , . ; : ! ? followed by a space, or before a spaced dash / bar (not a range: "4 - 7 chỗ")
PHRASE_END_RE = re.compile(r"[,.;:!?…](?=\s)|(?<!\d)(?=\s[-–|]\s(?!\d))")


def default_config(**overrides):
    """This module's knobs at their defaults (plus overrides), for callers that have their own Config."""
    return knobs.configure(sys.modules[__name__], [], env={}).replace(**overrides)


# ----------------------------------------------------------------------------------------------------------------------
# content


@dataclass
class Copy:
    headline: str
    subline: str = ""
    badge: str = ""
    disclaimer: str = ""

    def text(self):
        return " ".join(t for t in (self.headline, self.subline, self.badge, self.disclaimer) if t)


def _field(row, name):
    value = row.get(name, "") if isinstance(row, dict) else getattr(row, name, "")
    return "" if value is None else str(value)


def shorten(text, max_chars):
    """`text` cut to at most `max_chars` at the last phrase boundary (`,` `.` ` - `...); with none, at the last space
    (then ending in "…", which may make it one character longer); a single word longer than the limit is kept whole.
    Trailing , . ; : - are dropped."""
    text = normalize_copy(text)
    if max_chars and len(text) > max_chars:
        ends = [m.start() + (1 if text[m.start()] in ",.;:!?…" else 0) for m in PHRASE_END_RE.finditer(text)]
        ends = [e for e in ends if max_chars // 4 <= e <= max_chars]
        if ends:
            text = text[:ends[-1]]
        else:
            space = text.rfind(" ", 0, max_chars + 1)
            text = text[:space].rstrip(" ,.;:-–|") + "…" if space > 0 else text.split(" ")[0]
    return text.rstrip(" ,.;:-–|")


def find_offer(*texts):
    """The first offer (keyword + amount: `giảm 50%`, `chỉ 199.000đ`) in `texts`, else the first price with a currency
    unit (`650.000 đ`, `399k`); first letter capitalised; "" if none. A bare `100%` is a claim, not an offer."""
    for regex in (OFFER_RE, PRICE_RE):
        for text in texts:
            m = regex.search(normalize_copy(text))
            if m:
                offer = m.group(0)
                return offer[0].upper() + offer[1:]
    return ""


def extract_copy(row, cfg):
    """The row's Vietnamese copy (caption, description, moreInfo) -> what goes on the banner."""
    # NFC first: the data has decomposed letters too, and the regexes are written in precomposed ones
    caption, description, more = (normalize_copy(_field(row, name))
                                  for name in ("caption", "description", "moreInfo"))
    disclaimer = next((t for t in (more, description, caption) if DISCLAIMER_RE.search(t)), "")
    headline = shorten(caption, cfg.HEADLINE_MAX_CHARS)
    if not headline:  # an empty caption: the description takes its place
        headline, description = shorten(description, cfg.HEADLINE_MAX_CHARS), ""
    if not headline and not DISCLAIMER_RE.search(more):  # nor a description: the extra information
        headline = shorten(more, cfg.HEADLINE_MAX_CHARS)
    subline = ""
    if cfg.SUBLINE and description and not DISCLAIMER_RE.search(description):
        subline = shorten(description, cfg.SUBLINE_MAX_CHARS)
    badge = find_offer(description, caption, more) if cfg.BADGE else ""
    return Copy(headline, subline, badge, disclaimer if cfg.DISCLAIMER else "")


# ----------------------------------------------------------------------------------------------------------------------
# font


def font_file(path, bold):
    """The TTF to use: `path`, or DejaVu Sans (Bold) shipped inside the pinned matplotlib wheel. The package is
    located, not imported (importing matplotlib is slow and touches its config folder)."""
    if path:
        if not Path(path).is_file():
            raise knobs.InputError(f"font file not found: {path}")
        return str(path)
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise knobs.InputError("the font comes from the pinned matplotlib package: pip install -r requirements.txt")
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    ttf = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / name
    if not ttf.is_file():
        raise knobs.InputError(f"{ttf}: missing from the matplotlib package (reinstall it)")
    return str(ttf)


@functools.lru_cache(maxsize=8)
def font_cmap(path):
    """The set of code points the font has a glyph for (fontTools' best Unicode cmap)."""
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as ttf:
        return frozenset(ttf.getBestCmap())


@functools.lru_cache(maxsize=64)
def load_font(path, size):
    # BASIC layout: the same glyph placement whether or not this Pillow has raqm (after NFC, Vietnamese needs no
    # shaping); determinism across installs matters more than kerning
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def check_glyphs(text, path, row_id):
    """Raise InputError naming the row and the first character (after NFC) that the font has no glyph for."""
    cmap = font_cmap(path)
    for ch in normalize_copy(text):
        if ord(ch) not in cmap and not ch.isspace():
            raise knobs.InputError(f"row id={row_id}: the font {Path(path).name} has no glyph for {ch!r} "
                                   f"(U+{ord(ch):04X}); remove it from the copy or set FONT_BOLD/FONT_REGULAR")


def _check_fonts(copy, cfg, row_id):
    fonts = (font_file(cfg.FONT_BOLD, True), font_file(cfg.FONT_REGULAR, False))
    check_glyphs(" ".join((copy.headline, copy.badge)), fonts[0], row_id)
    check_glyphs(" ".join((copy.subline, copy.disclaimer)), fonts[1], row_id)
    return fonts


def checked_copy(row, cfg):
    """The row's Copy, every character checked against its font: call it for all rows before the expensive work
    (a generation method does it before loading its model), so a missing glyph stops the run at once."""
    copy = extract_copy(row, cfg)
    _check_fonts(copy, cfg, _field(row, "id"))
    if not copy.headline:
        print(f"text layer: row id={_field(row, 'id')} has no headline to set (caption, description and moreInfo "
              f"empty, or only a disclaimer): its banner is left as generated", file=sys.stderr)
    return copy


# ----------------------------------------------------------------------------------------------------------------------
# measuring the canvas


def luminance(rgb):
    """WCAG relative luminance of sRGB values 0..255 (any array shape ending in 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return c @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(l1, l2):
    hi, lo = np.maximum(l1, l2), np.minimum(l1, l2)
    return (hi + 0.05) / (lo + 0.05)


def busyness(image, box):
    """Edge density + luminance spread of `image` inside `box` (0 = flat colour; ~0.3+ = photo detail or text)."""
    small = image.crop(box).convert("L").reduce(4)
    g = np.asarray(small, dtype=np.float64) / 255.0
    if g.size < 4:
        return 1.0
    edges = np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()
    return float(4 * edges + g.std())


def texture(image, box, tile):
    """How busy the busiest part of `image` inside `box` is: the luminance std (0..1) of each `tile` x `tile` square,
    its 90th percentile over the squares (0 = flat; uniform noise ~0.29). A mean over the box would hide one busy
    corner, and that corner is where the text breaks up."""
    x0, y0, x1, y1 = (int(v) for v in box)
    g = np.asarray(image.crop((x0, y0, x1, y1)).convert("L"), dtype=np.float64) / 255.0
    th, tw = g.shape[0] // tile, g.shape[1] // tile
    if th == 0 or tw == 0:
        return float(g.std()) if g.size else 0.0
    tiles = g[:th * tile, :tw * tile].reshape(th, tile, tw, tile)
    return float(np.percentile(tiles.std(axis=(1, 3)), 90))


def _dilate(mask, px):
    return mask.filter(ImageFilter.MaxFilter(2 * px + 1)) if px > 0 else mask


def contrast_masks(mask, ring=(2, 6)):
    """(glyph cores, background ring) boolean arrays of an L glyph mask: the cores are the fully covered pixels
    eroded by 1 px (away from anti-aliased and JPEG-smeared edges), the ring the pixels `ring[0]..ring[1]` px from
    the glyphs: what the eye reads the text against."""
    core = np.asarray(mask.point(lambda v: 255 if v >= 250 else 0).filter(ImageFilter.MinFilter(3))) > 0
    if not core.any():
        core = np.asarray(mask) >= 250
    around = (np.asarray(_dilate(mask, ring[1])) > 0) & ~(np.asarray(_dilate(mask, ring[0])) > 0)
    return core, around


def contrast_at(image, core, around, tile=TILE_PX):
    """WCAG contrast ratio of the text against the WORST part of its background, on `image`'s pixels: the median
    text luminance against each `tile` x `tile` square of the ring around the glyphs, the square's background taken
    at its 90th (light text) or 10th (dark text) luminance percentile; the lowest ratio over the squares."""
    if not core.any() or not around.any():
        return float("inf")
    px = np.asarray(image.convert("RGB"))
    text = float(np.median(luminance(px[core])))
    ys, xs = np.nonzero(around)
    bg = luminance(px[ys, xs])
    light = text > np.median(bg)
    squares = (ys // tile) * (px.shape[1] // tile + 1) + xs // tile
    order = np.lexsort((bg, squares))  # by square, then by luminance within it
    ids, starts, counts = np.unique(squares[order], return_index=True, return_counts=True)
    keep = counts >= 16 if (counts >= 16).any() else counts > 0  # a corner of a few pixels says little
    q = 0.9 if light else 0.1
    per_square = bg[order][starts[keep] + np.floor(q * (counts[keep] - 1)).astype(int)]
    worst = per_square.max() if light else per_square.min()
    return float(contrast_ratio(text, worst))


def measure_contrast(image, mask, tile=TILE_PX):
    """WCAG contrast ratio of the text whose glyphs are `mask` (an L image, same size), measured on `image` against
    the worst `tile` square of its background."""
    return contrast_at(image, *contrast_masks(mask), tile)


# ----------------------------------------------------------------------------------------------------------------------
# layout


@dataclass
class Line:
    text: str
    font: str
    size: int
    x: int  # left of the pen
    y: int  # baseline


@dataclass
class Group:
    """Lines drawn in one colour over one optional panel (the headline block, or the disclaimer)."""
    lines: list
    box: tuple = (0, 0, 0, 0)  # the panel's rectangle
    color: tuple = _WHITE
    scrim: tuple = (0, 0, 0)
    alpha: float = 0.0  # the panel's opacity (0 = none)
    frost: int = 0  # blur radius of the background under the panel (0 = none): a frosted panel over busy pixels
    halo: int = 0  # px beyond the panel over which the frost fades out
    avoid: tuple = ()  # boxes the panel's halo must not reach (another group drawn before it: the disclaimer)
    contrast: float = 0.0  # measured on the composite before the JPEG, against the worst tile
    texture: float = 0.0  # the busiest tile under the panel, measured on the composite without the text


@dataclass
class Layout:
    region: str  # "text block" (from the layout banner), or the calm box's name (left, right, top, bottom, full)
    busyness: float
    groups: list = field(default_factory=list)
    badge: Group = None  # solid fill: `box`, `scrim` = fill colour, alpha 1
    block: tuple = None  # the layout banner's text block the headline covers (1024x533 px), when region is "text block"
    tile: int = TILE_PX  # the tile the contrast is measured per


def _wrap(text, font, width, max_lines):
    """Greedy word wrap by measured width; None if a word alone is too wide or it needs more than max_lines."""
    lines, current = [], ""
    for word in text.split(" "):
        trial = f"{current} {word}" if current else word
        if font.getlength(trial) <= width:
            current = trial
            continue
        if not current or font.getlength(word) > width:
            return None
        lines.append(current)
        current = word
    lines.append(current)
    return lines if len(lines) <= max_lines else None


def _metrics(size):
    """(space above the baseline, below it) of a line: Vietnamese stacks marks above capitals (Ẫ reaches 1.07 em)."""
    return int(np.ceil(1.12 * size)), int(np.ceil(0.28 * size))


def _badge_box(font, text, size):
    """(width, height, pen x, baseline y) of a badge: the text's ink padded on every side by more than the contrast
    ring (6 px), so the text is read against the badge's fill only."""
    x0, y0, x1, y1 = load_font(font, size).getbbox(text, anchor="ls")
    pad = max(9, round(0.3 * size))
    return x1 - x0 + 2 * pad, y1 - y0 + 2 * pad, pad - x0, pad - y0


def _fit(copy, cfg, fonts, box):
    """The largest headline size whose whole block (headline, second line, badge) fits in `box`:
    ([(text, font, size)] per line, badge (text, size) or None, block w, block h), or None."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    big, small = cfg.HEADLINE_PX
    for size in range(big, small - 1, -2):
        head = _wrap(copy.headline, load_font(fonts[0], size), width, cfg.HEADLINE_MAX_LINES)
        if head is None:
            continue
        lines = [(t, fonts[0], size) for t in head]
        if copy.subline:
            sub_size = max(12, round(size * cfg.SUBLINE_SCALE))
            sub = _wrap(copy.subline, load_font(fonts[1], sub_size), width, cfg.SUBLINE_MAX_LINES)
            if sub is None:
                continue
            lines += [(t, fonts[1], sub_size) for t in sub]
        h = sum(sum(_metrics(s)) for _, _, s in lines) + (round(_SUBLINE_GAP * size) if copy.subline else 0)
        w = max(load_font(f, s).getlength(t) for t, f, s in lines)
        badge = None
        if copy.badge:
            b_size = max(14, round(size * cfg.BADGE_SCALE))
            b_w, b_h, _, _ = _badge_box(fonts[0], copy.badge, b_size)
            if b_w > width:
                continue
            badge = (copy.badge, b_size)
            h += round(0.5 * b_size) + b_h
            w = max(w, b_w)
        if h <= height:
            lines = _balance(lines, width)
            w = max([load_font(f, s).getlength(t) for t, f, s in lines] + [w if badge is None else b_w])
            return lines, badge, w, h
    return None


def _balance(lines, width):
    """The same text on the same number of lines, each run of lines re-wrapped at the narrowest width that still
    needs no more lines (no orphan word on a last line)."""
    out = []
    for font, size in dict.fromkeys((f, s) for _, f, s in lines):
        part = [t for t, f, s in lines if (f, s) == (font, size)]
        text, face, lo, hi = " ".join(part), load_font(font, size), 1, width
        while lo < hi and len(part) > 1:  # the narrowest width that still wraps onto len(part) lines
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if _wrap(text, face, mid, len(part)) is not None else (mid + 1, hi)
        out += [(t, font, size) for t in (_wrap(text, face, hi, len(part)) if len(part) > 1 else part)]
    return out


def _candidates(image, cfg, bottom):
    """[(busyness, name, inner box, align)] of the calm-box rule, calmest first (ties: _REGIONS order), then the
    whole canvas as the last resort. Inner boxes keep MARGIN from the canvas edges."""
    W, H = image.size
    out = []
    for i, (name, (fx0, fy0, fx1, fy1), align) in enumerate(_REGIONS):
        box = (round(fx0 * W), round(fy0 * H), round(fx1 * W), min(round(fy1 * H), bottom))
        out.append((round(busyness(image, box), 6), i, name, box, align))
    out.sort()
    out.append((1.0, len(out), "full", (0, 0, W, bottom), "center"))
    m = cfg.MARGIN
    return [(b, name, (x0 + m, y0 + m, x1 - m, y1 - m), align) for b, _, name, (x0, y0, x1, y1), align in out]


def _block_boxes(block, size, bottom, cfg, steps=12):
    """Boxes for the copy at a text block of the layout banner, [(inner box, align)]: the block itself (inside
    MARGIN), then grown a step at a time on every side that has room, up to REGION_MAX_GROW of the canvas per side.
    The text aligns with the block: left in the left third, right in the right third, else centred."""
    W, m = size[0], cfg.MARGIN
    lo_x, lo_y, hi_x, hi_y = m, m, W - m, bottom - m // 2
    cx = (block[0] + block[2]) / 2
    align = "left" if cx < W / 3 else "right" if cx > 2 * W / 3 else "center"
    max_w, max_h = cfg.REGION_MAX_GROW * W, cfg.REGION_MAX_GROW * size[1]
    out = []
    for k in range(steps + 1):
        gx, gy = k * 0.03 * W, k * 0.05 * size[1]
        x0, x1 = max(lo_x, block[0] - gx), min(hi_x, block[2] + gx)
        y0, y1 = max(lo_y, block[1] - gy), min(hi_y, block[3] + gy)
        if x1 - x0 > max(max_w, block[2] - block[0]) or y1 - y0 > max(max_h, block[3] - block[1]):
            break
        if x1 > x0 and y1 > y0:
            out.append(((round(x0), round(y0), round(x1), round(y1)), align))
    return out


def _glyph_mask(size, lines):
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for line in lines:
        draw.text((line.x, line.y), line.text, fill=255, font=load_font(line.font, line.size), anchor="ls")
    return mask


def _panel_mask(size, group, grow=0):
    """The group's rounded panel as an L mask, grown by `grow` px on every side."""
    overlay = Image.new("L", size, 0)
    radius = max(4, (group.box[3] - group.box[1]) // 12) + grow
    x0, y0, x1, y1 = group.box
    ImageDraw.Draw(overlay).rounded_rectangle((x0 - grow, y0 - grow, x1 + grow, y1 + grow), radius=radius, fill=255)
    return overlay


def _soft_mask(size, group):
    """Where the group's panel acts: 255 inside the rounded panel, fading to 0 over `group.halo` px around it (a
    soft edge: the picture's busy detail does not run up to the text block, for a reader or an OCR's page analysis)."""
    mask = _panel_mask(size, group, group.halo // 2)
    if group.halo:
        mask = mask.filter(ImageFilter.GaussianBlur(group.halo / 4))
        mask.paste(255, mask=_panel_mask(size, group))
    for box in group.avoid:
        mask.paste(0, tuple(box))
    return mask


def _frosted(image, group):
    """`image` blurred by `group.frost` px where the group's soft panel mask says."""
    if not group.frost:
        return image
    x0, y0, x1, y1 = group.box
    pad = 3 * group.frost + 2 * group.halo
    area = (max(0, x0 - pad), max(0, y0 - pad), min(image.width, x1 + pad), min(image.height, y1 + pad))
    blurred = image.copy()
    blurred.paste(image.crop(area).filter(ImageFilter.GaussianBlur(group.frost)), area[:2])
    out = image.copy()
    out.paste(blurred, mask=_soft_mask(image.size, group))
    return out


def _composite(image, group, text=True):
    """`image` with the group's panel (frost, then scrim, both fading out over its halo) and, if `text`, its lines."""
    out = _frosted(image, group) if group.frost else image.copy()  # never draw on the caller's image
    if group.alpha > 0:
        overlay = _soft_mask(image.size, group).point(lambda v: round(v * group.alpha))
        out.paste(Image.new("RGB", image.size, group.scrim), mask=overlay)
    if text:
        out.paste(Image.new("RGB", image.size, group.color), mask=_glyph_mask(image.size, group.lines))
    return out


def _choose_treatment(image, group, cfg):
    """Set the group's panel (frost, opacity, colour) and text colour: the lightest treatment under which the worst
    tile of the background still gives the target contrast AND no tile under the text stays busier than
    TEXTURE_MAX. A busy background is frosted first (so a light panel is enough and the picture still shows)."""
    masks = contrast_masks(_glyph_mask(image.size, group.lines))
    target = cfg.CONTRAST_MIN * cfg.CONTRAST_MARGIN
    group.frost = cfg.FROST_PX if texture(image, group.box, cfg.TILE_PX) > cfg.TEXTURE_MAX else 0
    group.halo = cfg.HALO_PX if group.frost else 0
    base, group.frost = _frosted(image, group), 0  # blurred once; the trials below only add scrim and text
    best = None
    for alpha in cfg.SCRIM_ALPHAS:
        # dark text on a light panel first: at equal opacity it is what readers and OCR read best
        for color, scrim in ((_INK, (255, 255, 255)), (_WHITE, (0, 0, 0))):
            group.color, group.scrim, group.alpha = color, scrim, alpha
            ratio = contrast_at(_composite(base, group), *masks, cfg.TILE_PX)
            busy = texture(_composite(base, group, text=False), group.box, cfg.TILE_PX) if alpha < 1 else 0.0
            ok = ratio >= target and busy <= cfg.TEXTURE_MAX
            if best is None or (ok and not best[0]) or (not best[0] and ratio > best[1]):
                best = (ok, ratio, busy, color, scrim, alpha)
        if best[0]:
            break
    _, group.contrast, group.texture, group.color, group.scrim, group.alpha = best
    group.frost = cfg.FROST_PX if base is not image else 0


def _disclaimer_group(copy, cfg, fonts, size):
    """(the disclaimer's group: one line across the bottom, shrunk until it fits the width; the y its band starts)"""
    W, H = size
    px = cfg.DISCLAIMER_PX
    while px > 8 and load_font(fonts[1], px).getlength(copy.disclaimer) > W - 2 * cfg.MARGIN:
        px -= 1
    up, down = _metrics(px)
    y = H - cfg.MARGIN // 2 - down
    x = (W - round(load_font(fonts[1], px).getlength(copy.disclaimer))) // 2
    top = y - up - max(4, px // 3)
    return Group([Line(copy.disclaimer, fonts[1], px, x, y)], box=(0, top, W, H)), top


def _place_lines(lines, inner, align, block_w, block_h):
    """[Line] of the fitted block centred vertically in `inner`, aligned left / right / centre; (lines, bottom y)."""
    x0, y0, x1, y1 = inner
    left = {"left": x0, "right": x1 - round(block_w)}.get(align, x0 + (x1 - x0 - round(block_w)) // 2)
    y, placed = y0 + (y1 - y0 - block_h) // 2, []
    for text, font, size in lines:
        if placed and size != placed[-1].size:  # a little air between the headline and the second line
            y += round(_SUBLINE_GAP * placed[-1].size)
        up, down = _metrics(size)
        width = round(load_font(font, size).getlength(text))
        x = {"left": left, "right": left + round(block_w) - width}.get(align, x0 + (x1 - x0 - width) // 2)
        placed.append(Line(text, font, size, x, y + up))
        y += up + down
    return placed, y


def _badge_group(badge, fonts, cfg, inner, align, y):
    """The offer badge under the text block: solid BADGE_FILL, white or dark text (whichever contrasts more)."""
    text, size = badge
    width, height, pen_x, base_y = _badge_box(fonts[0], text, size)
    y += round(0.5 * size)
    bx = {"left": inner[0], "right": inner[2] - width}.get(align, inner[0] + (inner[2] - inner[0] - width) // 2)
    group = Group([Line(text, fonts[0], size, bx + pen_x, y + base_y)], box=(bx, y, bx + width, y + height),
                  scrim=tuple(cfg.BADGE_FILL), alpha=1.0)
    fill = luminance(cfg.BADGE_FILL)
    group.color = max((_WHITE, _INK), key=lambda c: contrast_ratio(luminance(c), fill))
    group.contrast = float(contrast_ratio(luminance(group.color), fill))
    if group.contrast < cfg.CONTRAST_MIN * cfg.CONTRAST_MARGIN:
        raise knobs.InputError(f"BADGE_FILL {tuple(cfg.BADGE_FILL)}: white or dark text on it reaches only "
                               f"{group.contrast:.2f}; pick a darker or lighter colour")
    return group


def _fitted_place(image, copy, cfg, fonts, bottom, block):
    """(region name, busyness, inner box, align, fitted) of the place the copy goes: around the layout banner's text
    block when there is one (the box grown from it that gives the largest headline, the least grown of equals: the
    copy is set as large as a text block there allows, not squeezed into a small one), else (or when it cannot fit
    there) the first of the calm-box rule's boxes it fits in."""
    best = None
    for inner, align in _block_boxes(block, image.size, bottom, cfg) if block is not None else ():
        fitted = _fit(copy, cfg, fonts, inner)
        if fitted and (best is None or fitted[0][0][2] > best[4][0][0][2]):
            best = ("text block", busyness(image, inner), inner, align, fitted)
    if best:
        return best
    for calm, name, inner, align in _candidates(image, cfg, bottom):
        fitted = _fit(copy, cfg, fonts, inner)
        if fitted:
            return name, calm, inner, align, fitted
    return None


def plan_layout(image, copy, cfg, row_id="", block=None):
    """Where and how the copy goes on `image` (a 1024x533 RGB canvas); `block`: the layout banner's text block that
    the headline should cover (None: the calm box). Raises InputError if the copy cannot fit."""
    W, H = image.size
    fonts = _check_fonts(copy, cfg, row_id)
    bottom, groups = H, []
    if copy.disclaimer:
        group, bottom = _disclaimer_group(copy, cfg, fonts, image.size)
        groups.append(group)
    place = _fitted_place(image, copy, cfg, fonts, bottom, block)
    if place is None:
        raise knobs.InputError(f"row id={row_id}: the copy does not fit the banner even at {cfg.HEADLINE_PX[1]} px "
                               f"(lower HEADLINE_MAX_CHARS or HEADLINE_PX)")
    name, calm, inner, align, (lines, badge, block_w, block_h) = place
    layout = Layout(region=name, busyness=calm, block=block if name == "text block" else None, tile=cfg.TILE_PX)
    placed, y = _place_lines(lines, inner, align, block_w, block_h)
    pad = max(10, round(cfg.PANEL_PAD * lines[0][2]))
    ink = (min(ln.x for ln in placed) - pad, placed[0].y - _metrics(placed[0].size)[0] - pad // 2,
           max(ln.x + round(load_font(ln.font, ln.size).getlength(ln.text)) for ln in placed) + pad, y + pad // 2)
    if layout.block:  # the panel covers what was written there too
        ink = (min(ink[0], block[0]), min(ink[1], block[1]), max(ink[2], block[2]), max(ink[3], block[3]))
    head = Group(placed, box=(max(0, ink[0]), max(0, ink[1]), min(W, ink[2]), min(bottom, ink[3])))
    # drawn in this order, each measured on what is under it then: the disclaimer, the headline block (its halo kept
    # off the disclaimer's band), the badge
    for group in groups:
        _choose_treatment(image, group, cfg)
        head.avoid += (group.box,)
    _choose_treatment(draw_layout(image, Layout(name, calm, groups=groups)), head, cfg)
    if badge:
        layout.badge = _badge_group(badge, fonts, cfg, inner, align, y)
    layout.groups = [head] + groups
    return layout


def draw_layout(image, layout):
    """`image` with the layout drawn: the disclaimer first, then the headline block (`groups[0]`), then the badge."""
    out = image.convert("RGB")
    for group in layout.groups[1:] + layout.groups[:1] + ([layout.badge] if layout.badge else []):
        out = _composite(out, group)
    return out


def measured_contrasts(image, layout):
    """[(first line's text, WCAG ratio measured on `image` against the worst tile)] for each group of the layout
    (headline block, disclaimer, badge): run it on the decoded JPEG to measure what a viewer gets."""
    groups = layout.groups + ([layout.badge] if layout.badge else [])
    return [(g.lines[0].text, measure_contrast(image, _glyph_mask(image.size, g.lines), layout.tile)) for g in groups]


def layout_blocks(paths, cfg, desc=None):
    """The largest usable text block of each layout banner in `paths` (1024x533 px, or None: the calm box), found
    once per banner content with TEXT_DETECTOR and cached in REGION_CACHE. Call it for all rows before the expensive
    work (a method: before its model loads) so that a missing detector fails at once; `desc` labels a progress bar."""
    found = text_regions.cached_blocks(paths, cfg.TEXT_DETECTOR, cfg.REGION_CACHE, cfg.TESSERACT, desc)
    least = cfg.REGION_MIN_AREA * images.BANNER_SIZE[0] * images.BANNER_SIZE[1]
    return [next((b for b in blocks if text_regions.area(b) >= least), None) for blocks in found]


def render(image, copy, cfg, row_id="", layout_from=None):
    """(image with the copy drawn on it, its Layout). `image` is resized to exactly 1024x533 first. `layout_from`:
    the banner file whose largest text block places the headline (Method 1: the init banner it repaints; Method 2:
    the nearest training banner); None, LAYOUT=0 or no usable text block there: the calmest box."""
    canvas = images.to_banner(image)
    if not copy.headline:  # no copy to set (checked_copy said so): the banner as generated, no empty panel
        return canvas, Layout(region="none", busyness=0.0)
    layout = plan_layout(canvas, copy, cfg, row_id, block_used(layout_from, cfg))
    return draw_layout(canvas, layout), layout


def block_used(layout_from, cfg):
    """The text block of `layout_from` that places the headline (as `render` takes it), or None: the calm box."""
    return layout_blocks([layout_from], cfg)[0] if layout_from and cfg.LAYOUT else None


def row_key(copy, layout_from, cfg):
    """One banner's resume key beyond the recipe: what `render` draws from, the copy and the text block it is placed
    by (found by the detector, cached by content: call layout_blocks for all rows first). A new detector version or
    setting then redoes exactly the banners whose block moved, a renamed layout banner none."""
    return files.settings_key({"copy": asdict(copy), "block": block_used(layout_from, cfg)})


def apply(image, row, cfg=None, layout_from=None):
    """The hook for the generation methods and baselines: `row` (id, caption, description, moreInfo; a dict or a
    pandas row) -> the 1024x533 image with its copy. `cfg`: this module's Config (`default_config(...)`);
    `layout_from`: as in `render`."""
    cfg = default_config() if cfg is None else cfg
    return render(image, extract_copy(row, cfg), cfg, _field(row, "id"), layout_from)[0]


# ----------------------------------------------------------------------------------------------------------------------
# script: a folder of banners + its info.csv -> the same banners with their copy


# knobs that say where things are or how to check them, not how a banner looks
SCRIPT_KNOBS = ("IN_DIR", "INFO", "OUT_DIR", "JPEG_CHECK", "LAYOUT_CSV", "LAYOUT_IMAGES", "DATA_DIR")  # script mode's
_NOT_RECIPE = SCRIPT_KNOBS + ("REGION_CACHE", "TESSERACT")  # where, not how: no part of a banner's recipe


def recipe(cfg):
    """What every output depends on: knobs and the font files' content (a new recipe redoes every banner). The text
    block that places the copy depends on the detector and the layout banner: `row_key` puts the block itself in
    each banner's own key."""
    keys = [k for k in cfg.as_dict() if k not in _NOT_RECIPE]
    fonts = [font_file(cfg.FONT_BOLD, True), font_file(cfg.FONT_REGULAR, False)]
    return {"knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(cfg, k)) for k in keys)},
            "fonts": {Path(f).name: files.file_hash(f) for f in fonts}}


def layout_sources(cfg, info):
    """{row id: layout banner path} from LAYOUT_CSV: Method 1's manifest.csv (init_bannerImage) or a retrieval.csv
    (train_bannerImage of rank 1); {} without one. Every row must have one there, and its file must exist."""
    if not cfg.LAYOUT_CSV or not cfg.LAYOUT:
        return {}
    import pandas as pd

    table = pd.read_csv(cfg.LAYOUT_CSV, dtype=str, keep_default_na=False)
    column = next((c for c in ("init_bannerImage", "train_bannerImage") if c in table.columns), None)
    if column is None or "id" not in table.columns:
        raise knobs.InputError(f"{cfg.LAYOUT_CSV}: needs columns id and init_bannerImage (a manifest.csv) or "
                               f"train_bannerImage (a retrieval.csv)")
    if "rank" in table.columns:
        table = table[table["rank"].astype(int) == 1]
    folder = Path(cfg.LAYOUT_IMAGES) if cfg.LAYOUT_IMAGES else dataset.split_dir("train", cfg.DATA_DIR) / "images"
    names = dict(zip(table["id"], table[column]))
    missing = [r.id for r in info.itertuples() if r.id not in names or not (folder / names[r.id]).is_file()]
    if missing:
        raise knobs.InputError(f"{cfg.LAYOUT_CSV}: no layout banner in {folder} for {len(missing)} row(s), id "
                               f"{error_list(missing)}")
    return {r.id: folder / names[r.id] for r in info.itertuples()}


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    if not cfg.IN_DIR or not cfg.INFO:
        raise knobs.InputError("--IN_DIR (a folder of banners) and --INFO (their info.csv) are both required")
    if Path(cfg.IN_DIR).resolve() == Path(cfg.OUT_DIR).resolve():
        raise knobs.InputError(f"--OUT_DIR is --IN_DIR ({cfg.IN_DIR}): each rerun would set the copy again on its own "
                               f"output; write to another folder")
    info = dataset.read_info(cfg.INFO)
    missing = [r.id for r in info.itertuples() if not (Path(cfg.IN_DIR) / r.bannerImage).is_file()]
    if missing:
        raise knobs.InputError(f"{cfg.IN_DIR}: no banner for {len(missing)} row(s), id {error_list(missing)} (named "
                               f"by bannerImage in {cfg.INFO})")
    for row in info.itertuples():  # every row checked before any write
        images.check_banner_name(row.bannerImage, f"row id={row.id}")
    copies = {row.id: checked_copy(row, cfg) for row in info.itertuples()}
    sources = layout_sources(cfg, info)
    files.check_writable(cfg.OUT_DIR)  # before the text-block pass: a bad folder is refused in seconds
    layout_blocks(sorted(set(sources.values())), cfg, desc="text regions of the layout banners (cached)")
    # resume per banner: done only when its record says it was made with this recipe, these input banner bytes, this
    # copy and this text block (a changed knob, caption, banner or block redoes that banner; a kill loses at most one),
    # and the file there is still the one written (another tool may have rewritten it since)
    wanted = recipe(cfg)
    with files.banner_lock(cfg.OUT_DIR, cfg.OUT_DIR):  # a generation run's rank 0 takes it too: never both at once
        records = files.JsonStore(Path(cfg.OUT_DIR) / ".text_layer.json", every=1)
        done = 0
        for row in progress(list(info.itertuples()), desc="text layer", unit="img"):
            out, src = Path(cfg.OUT_DIR) / row.bannerImage, Path(cfg.IN_DIR) / row.bannerImage
            source = sources.get(row.id)
            key = files.settings_key({"recipe": wanted, "input": files.file_hash(src),
                                      "row": row_key(copies[row.id], source, cfg)})
            if out.is_file() and records.get(row.bannerImage) == [key, files.file_hash(out)]:
                continue
            write_banner(images.load_rgb(src), copies[row.id], cfg, row, source)
            records.put(row.bannerImage, [key, files.file_hash(out)])
            done += 1
        records.save()
    print(f"{done} banners written, {len(info) - done} already done, in {cfg.OUT_DIR}")


def write_banner(image, copy, cfg, row, layout_from):
    """Render, JPEG-encode, re-measure the contrast on the decoded JPEG (JPEG_CHECK), write atomically."""
    image, layout = render(image, copy, cfg, row.id, layout_from)
    data = images.banner_jpeg(image)
    for text, ratio in measured_contrasts(images.decode_image(data), layout) if cfg.JPEG_CHECK else ():
        if ratio < cfg.CONTRAST_MIN:
            raise knobs.InputError(f"row id={row.id}: contrast {ratio:.2f} < {cfg.CONTRAST_MIN} after the JPEG "
                                   f"for {text!r} (raise CONTRAST_MARGIN)")
    images.save_banner(data, cfg.OUT_DIR, row.bannerImage)


if __name__ == "__main__":
    knobs.run_main(main)
