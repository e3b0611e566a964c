"""
The ad copy on the banner: the row's own Vietnamese headline, a second line, a price/offer badge and the "not a
medicine" disclaimer, set in a real font on the final 1024x533 canvas. No weights, deterministic.

Order of a banner's life: generate -> post-process (optional) -> text layer -> JPEG. The layer goes last so the
post-processing's blend and padding never wash out the text, and its contrast is measured on the pixels it lies on.

- Content (`extract_copy`): headline = caption shortened at a phrase boundary (never inside a word); second line =
  description (skipped when it is the disclaimer); badge = the first price or offer found by regex (`giảm 50%`,
  `chỉ 199.000đ`, `399k`, `0 đồng`, `2 triệu`); disclaimer = the field that says `... không phải là thuốc ...`.
- Font: DejaVu Sans (Bold for the headline and badge) from the pinned `matplotlib` wheel, found through its package
  folder, never from the system. Every character (after NFC) is checked against the font's cmap with fontTools: a
  missing one is an InputError naming the row id and the character, never a tofu box.
- Layout (`plan_layout`): the calmest of a few candidate boxes (left, right, top, bottom), measured by edge density
  plus luminance spread; when none is calm enough the text sits on a panel. The font size is the largest that fits,
  lines break by measured width. Text is white or near-black, whichever contrasts more with the pixels around the
  glyphs; a scrim (a rounded panel, as transparent as the measurement allows) is added until the WCAG contrast ratio,
  measured on the composite pixels, is >= CONTRAST_MIN x CONTRAST_MARGIN (the margin absorbs the JPEG).

Use from code:  `image = text_layer.apply(image, row, text_layer.default_config(DISCLAIMER=False))`.
As a pass over a folder of banners (resumable, atomic, exactly 1024x533 JPEGs):
    python -m inference.text_layer --IN_DIR=inference/method_1 --INFO=data/test/info.csv --OUT_DIR=outputs/m1_text
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
from core.errors import error_list
from core.progress import progress
from core import disclaimer as disclaimer_rule

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
MARGIN = 28  # px between the text and the canvas edge
CALM_MAX = 0.16  # a box busier than this (edge density + luminance spread) gets a panel under its text
PANEL_MIN_ALPHA = 0.6  # the panel's least opacity on a busy box
CONTRAST_MIN = 4.5  # WCAG AA for normal text
CONTRAST_MARGIN = 1.25  # plan for this much more, measured before the JPEG (the JPEG's ringing eats some)
JPEG_CHECK = True  # script mode: re-measure each written JPEG and fail the row if it fell below CONTRAST_MIN

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
    text = dataset.normalize_text(text)
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
            m = regex.search(dataset.normalize_text(text))
            if m:
                offer = m.group(0)
                return offer[0].upper() + offer[1:]
    return ""


def extract_copy(row, cfg):
    """The row's Vietnamese copy (caption, description, moreInfo) -> what goes on the banner."""
    # NFC first: the data has decomposed letters too, and the regexes are written in precomposed ones
    caption, description, more = (dataset.normalize_text(_field(row, name))
                                  for name in ("caption", "description", "moreInfo"))
    disclaimer = next((t for t in (more, description, caption) if DISCLAIMER_RE.search(t)), "")
    headline = shorten(caption, cfg.HEADLINE_MAX_CHARS)
    if not headline:  # an empty caption: the description takes its place
        headline, description = shorten(description, cfg.HEADLINE_MAX_CHARS), ""
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
    for ch in dataset.normalize_text(text):
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


def contrast_at(image, core, around):
    """WCAG contrast ratio on `image`'s pixels: the median text luminance against the worst background, the 98th
    (light text) or 2nd (dark text) percentile of the ring."""
    if not core.any() or not around.any():
        return float("inf")
    px = np.asarray(image.convert("RGB"))
    text = float(np.median(luminance(px[core])))
    bg = luminance(px[around])
    worst = np.percentile(bg, 98) if text > np.median(bg) else np.percentile(bg, 2)
    return float(contrast_ratio(text, worst))


def measure_contrast(image, mask):
    """WCAG contrast ratio of the text whose glyphs are `mask` (an L image, same size), measured on `image`."""
    return contrast_at(image, *contrast_masks(mask))


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
    """Lines drawn in one colour over one optional scrim (the headline block, or the disclaimer)."""
    lines: list
    box: tuple = (0, 0, 0, 0)  # the scrim's rectangle
    color: tuple = _WHITE
    scrim: tuple = (0, 0, 0)
    alpha: float = 0.0
    contrast: float = 0.0  # measured on the composite before the JPEG


@dataclass
class Layout:
    region: str
    busyness: float
    groups: list = field(default_factory=list)
    badge: Group = None  # solid fill: `box`, `scrim` = fill colour, alpha 1


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
    """[(busyness, name, pixel box, align)], calmest first (ties: _REGIONS order)."""
    W, H = image.size
    out = []
    for i, (name, (fx0, fy0, fx1, fy1), align) in enumerate(_REGIONS):
        box = (round(fx0 * W), round(fy0 * H), round(fx1 * W), min(round(fy1 * H), bottom))
        out.append((round(busyness(image, box), 6), i, name, box, align))
    out.sort()
    return [(b, name, box, align) for b, _, name, box, align in out]


def _glyph_mask(size, lines):
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for line in lines:
        draw.text((line.x, line.y), line.text, fill=255, font=load_font(line.font, line.size), anchor="ls")
    return mask


def _composite(image, group):
    """`image` with the group's scrim and text drawn on it."""
    out = image.copy()
    if group.alpha > 0:
        overlay = Image.new("L", image.size, 0)
        radius = max(4, (group.box[3] - group.box[1]) // 12)
        ImageDraw.Draw(overlay).rounded_rectangle(group.box, radius=radius, fill=round(255 * group.alpha))
        out.paste(Image.new("RGB", image.size, group.scrim), mask=overlay)
    out.paste(Image.new("RGB", image.size, group.color), mask=_glyph_mask(image.size, group.lines))
    return out


def _choose_colors(image, group, cfg, min_alpha=0.0):
    """Set the group's text colour, scrim and least scrim opacity for which the measured contrast holds."""
    masks = contrast_masks(_glyph_mask(image.size, group.lines))
    target = cfg.CONTRAST_MIN * cfg.CONTRAST_MARGIN
    best = None
    for alpha in (a for a in cfg.SCRIM_ALPHAS if a >= min_alpha - 1e-9):
        for color, scrim in ((_WHITE, (0, 0, 0)), (_INK, (255, 255, 255))):
            group.color, group.scrim, group.alpha = color, scrim, alpha
            ratio = contrast_at(_composite(image, group), *masks)
            if best is None or ratio > best[0]:
                best = (ratio, color, scrim, alpha)
        if best[0] >= target:
            break
    group.contrast, group.color, group.scrim, group.alpha = best


def plan_layout(image, copy, cfg, row_id=""):
    """Where and how the copy goes on `image` (a 1024x533 RGB canvas). Raises InputError if it cannot fit."""
    W, H = image.size
    fonts = _check_fonts(copy, cfg, row_id)
    bottom, groups = H, []
    if copy.disclaimer:  # one line across the bottom, shrunk until it fits the width
        size = cfg.DISCLAIMER_PX
        while size > 8 and load_font(fonts[1], size).getlength(copy.disclaimer) > W - 2 * cfg.MARGIN:
            size -= 1
        up, down = _metrics(size)
        y = H - cfg.MARGIN // 2 - down
        x = (W - round(load_font(fonts[1], size).getlength(copy.disclaimer))) // 2
        pad = max(4, size // 3)
        line = Line(copy.disclaimer, fonts[1], size, x, y)
        groups.append(Group([line], box=(0, y - up - pad, W, H)))
        bottom = y - up - pad
    fitted = None
    candidates = _candidates(image, cfg, bottom)
    for calm, name, box, align in candidates + [(1.0, "full", (0, 0, W, bottom), "center")]:
        inner = (box[0] + cfg.MARGIN, box[1] + cfg.MARGIN, box[2] - cfg.MARGIN, box[3] - cfg.MARGIN)
        fitted = _fit(copy, cfg, fonts, inner)
        if fitted:
            break
    if not fitted:
        raise knobs.InputError(f"row id={row_id}: the copy does not fit the banner even at {cfg.HEADLINE_PX[1]} px "
                               f"(lower HEADLINE_MAX_CHARS or HEADLINE_PX)")
    lines, badge, block_w, block_h = fitted
    layout = Layout(region=name, busyness=calm)
    left = inner[0] if align == "left" else inner[0] + (inner[2] - inner[0] - round(block_w)) // 2
    top = inner[1] + (inner[3] - inner[1] - block_h) // 2
    y, placed = top, []
    for text, font, size in lines:
        if placed and size != placed[-1].size:  # a little air between the headline and the second line
            y += round(_SUBLINE_GAP * placed[-1].size)
        up, down = _metrics(size)
        width = load_font(font, size).getlength(text)
        x = left if align == "left" else inner[0] + (inner[2] - inner[0] - round(width)) // 2
        placed.append(Line(text, font, size, x, y + up))
        y += up + down
    pad = max(10, lines[0][2] // 3)
    text_right = max(ln.x + round(load_font(ln.font, ln.size).getlength(ln.text)) for ln in placed)
    text_left = min(ln.x for ln in placed)
    head = Group(placed, box=(max(0, text_left - pad), max(0, top - pad // 2),
                              min(W, text_right + pad), min(bottom, y + pad // 2)))
    _choose_colors(image, head, cfg, cfg.PANEL_MIN_ALPHA if calm > cfg.CALM_MAX else 0.0)
    if badge:
        text, size = badge
        width, height, pen_x, base_y = _badge_box(fonts[0], text, size)
        y += round(0.5 * size)
        bx = left if align == "left" else inner[0] + (inner[2] - inner[0] - width) // 2
        line = Line(text, fonts[0], size, bx + pen_x, y + base_y)
        layout.badge = Group([line], box=(bx, y, bx + width, y + height), scrim=tuple(cfg.BADGE_FILL), alpha=1.0)
        fill = luminance(cfg.BADGE_FILL)
        layout.badge.color = max((_WHITE, _INK), key=lambda c: contrast_ratio(luminance(c), fill))
        layout.badge.contrast = float(contrast_ratio(luminance(layout.badge.color), fill))
        if layout.badge.contrast < cfg.CONTRAST_MIN * cfg.CONTRAST_MARGIN:
            raise knobs.InputError(f"BADGE_FILL {tuple(cfg.BADGE_FILL)}: white or dark text on it reaches only "
                                   f"{layout.badge.contrast:.2f}; pick a darker or lighter colour")
    for group in groups:  # the disclaimer
        _choose_colors(image, group, cfg)
    layout.groups = [head] + groups
    return layout


def draw_layout(image, layout):
    out = image.convert("RGB")
    for group in layout.groups + ([layout.badge] if layout.badge else []):
        out = _composite(out, group)
    return out


def measured_contrasts(image, layout):
    """[(first line's text, WCAG ratio measured on `image`)] for each group of the layout (headline block,
    disclaimer, badge): run it on the decoded JPEG to measure what a viewer gets."""
    groups = layout.groups + ([layout.badge] if layout.badge else [])
    return [(g.lines[0].text, measure_contrast(image, _glyph_mask(image.size, g.lines))) for g in groups]


def render_copy(image, copy, cfg, row_id=""):
    """(image with the copy drawn on it, its Layout). `image` is resized to exactly 1024x533 first."""
    canvas = images.to_banner(image)
    layout = plan_layout(canvas, copy, cfg, row_id)
    return draw_layout(canvas, layout), layout


def apply(image, row, cfg=None):
    """The hook for the generation methods and baselines: `row` (id, caption, description, moreInfo; a dict or a
    pandas row) -> the 1024x533 image with its copy. `cfg`: this module's Config (`default_config(...)`)."""
    cfg = default_config() if cfg is None else cfg
    return render_copy(image, extract_copy(row, cfg), cfg, _field(row, "id"))[0]


# ----------------------------------------------------------------------------------------------------------------------
# script: a folder of banners + its info.csv -> the same banners with their copy


def recipe(cfg):
    """What every output depends on: knobs and the font files' content (a new recipe redoes every banner)."""
    keys = [k for k in cfg.as_dict() if k not in ("IN_DIR", "INFO", "OUT_DIR", "JPEG_CHECK")]
    fonts = [font_file(cfg.FONT_BOLD, True), font_file(cfg.FONT_REGULAR, False)]
    return {"knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(cfg, k)) for k in keys)},
            "fonts": {Path(f).name: files.file_hash(f) for f in fonts}}


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    if not cfg.IN_DIR or not cfg.INFO:
        raise knobs.InputError("--IN_DIR (a folder of banners) and --INFO (their info.csv) are both required")
    info = dataset.read_info(cfg.INFO)
    missing = [r.id for r in info.itertuples() if not (Path(cfg.IN_DIR) / r.bannerImage).is_file()]
    if missing:
        raise knobs.InputError(f"{cfg.IN_DIR}: no banner for {len(missing)} row(s), id {error_list(missing)} (named "
                               f"by bannerImage in {cfg.INFO})")
    for row in info.itertuples():  # every row checked before any write
        images.check_banner_name(row.bannerImage, f"row id={row.id}")
    copies = {row.id: checked_copy(row, cfg) for row in info.itertuples()}
    files.check_writable(cfg.OUT_DIR)
    # resume per banner: done only when its record says it was made with this recipe, this copy and these input
    # bytes (a changed knob, caption or input banner redoes that banner; a kill loses at most the one being written)
    wanted = recipe(cfg)
    with files.FolderLock(cfg.OUT_DIR, ".text_layer.lock"):  # a second run would write back its own records
        records = files.JsonStore(Path(cfg.OUT_DIR) / ".text_layer.json", every=1)
        done = 0
        for row in progress(list(info.itertuples()), desc="text layer", unit="img"):
            out, src = Path(cfg.OUT_DIR) / row.bannerImage, Path(cfg.IN_DIR) / row.bannerImage
            key = files.settings_key({"recipe": wanted, "copy": asdict(copies[row.id]), "input": files.file_hash(src)})
            if records.get(row.bannerImage) == key and images.is_banner_jpeg(out):
                continue
            image, layout = render_copy(images.load_rgb(src), copies[row.id], cfg, row.id)
            data = images.banner_jpeg(image)
            for text, ratio in measured_contrasts(images.decode_image(data), layout) if cfg.JPEG_CHECK else ():
                if ratio < cfg.CONTRAST_MIN:
                    raise knobs.InputError(f"row id={row.id}: contrast {ratio:.2f} < {cfg.CONTRAST_MIN} after the JPEG "
                                           f"for {text!r} (raise CONTRAST_MARGIN)")
            images.save_banner(data, cfg.OUT_DIR, row.bannerImage)
            records.put(row.bannerImage, key)
            done += 1
        records.save()
    print(f"{done} banners written, {len(info) - done} already done, in {cfg.OUT_DIR}")


if __name__ == "__main__":
    knobs.run_main(main)
