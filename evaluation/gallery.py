"""
A self-contained gallery.html of an evaluated run, made to read on a laptop (1366x768) as well as a 1920x1080 screen:
one row per banner with four images side by side (the init/retrieved training banner from PRED_DIR/manifest.csv's
init_bannerImage, else GT_DIR/retrieval.csv's rank 1; the nearest training banner by duplication; the prediction; the
ground truth), scaled to the window's width, and, in the first column, the row's id, every number and its text. No
horizontal scrolling: the table is as wide as the window. The sort bar orders the rows by any number (click again to
reverse); the order is kept in the address (gallery.html#sort=-duplication: highest duplication first). Images are small JPEG data URIs, so the one file opens anywhere (mail it, open it from a zip).
"""
import base64
import html
import io
import math
from pathlib import Path

import pandas as pd

from core import dataset
from core.files import atomic_write
from core.images import load_rgb
from evaluation import duplication

# (column of evaluate's per-row table, short label, what it is: the tooltip); lower-is-better ones first
NUMBERS = [("row_score", "score", "row score: mean of the four terms (lower is better)"),
           ("psnr_term", "psnr·t", "PSNR term 1/(1+PSNR)"),
           ("ssim_term", "ssim·t", "SSIM term 1-(SSIM+1)/2"),
           ("inception_term", "incep·t", "Inception term (1-cos)/2"),
           ("psnr", "psnr", "PSNR in dB (higher is closer)"),
           ("ssim", "ssim", "SSIM (higher is closer)"),
           ("inception_cos", "cos", "Inception cosine to the ground truth"),
           ("duplication", "dup", f"max Inception cosine to any training banner (guard {duplication.DUP_MAX}, "
                                  f"competition's estimated failing level {duplication.COMPETITION_FAIL})"),
           ("clip_score", "clip", "CLIP score prompt <-> prediction")]
IMAGE_COLUMNS = ["init / retrieved", "nearest training", "prediction", "ground truth"]

SORT_JS = r"""
const body = document.querySelector('tbody');
document.querySelectorAll('#sort button').forEach(b => b.addEventListener('click', () => {
  const key = b.dataset.key, up = b.dataset.dir !== 'up';
  document.querySelectorAll('#sort button').forEach(o => delete o.dataset.dir);
  b.dataset.dir = up ? 'up' : 'down';
  const val = tr => { const v = tr.dataset[key] ?? ''; const n = parseFloat(v); return isNaN(n) ? v : n; };
  [...body.rows].sort((p, q) => { const x = val(p), y = val(q);
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); }).forEach(tr => body.appendChild(tr));
  history.replaceState(null, '', '#sort=' + (up ? '' : '-') + key);
}));
// a link can carry its order: gallery.html#sort=-duplication opens sorted by duplication, highest first
const m = location.hash.match(/sort=(-?)(\w+)/), b = m && document.querySelector(`#sort button[data-key="${m[2]}"]`);
if (b) { b.click(); if (m[1]) b.click(); }
"""

STYLE = """
*{box-sizing:border-box}
body{font:13px/1.35 system-ui,sans-serif;margin:0 8px;color:#222}
header{padding:6px 0}h1{font-size:15px;margin:0 0 2px}p{margin:2px 0}
#sort{margin:4px 0}#sort button{font:12px sans-serif;margin:0 2px 2px 0;padding:1px 7px;border:1px solid #bbb;
  border-radius:3px;background:#f4f4f4;cursor:pointer}
#sort button[data-dir]{background:#dde8ff;border-color:#79a}
#sort button[data-dir=up]::after{content:" \\25B2"}#sort button[data-dir=down]::after{content:" \\25BC"}
table{width:100%;table-layout:fixed;border-collapse:collapse}
col.meta{width:22%}col.image{width:19.5%}
th{position:sticky;top:0;background:#eee;font-weight:600;text-align:left;padding:3px 4px;border-bottom:1px solid #ccc;z-index:1}
td{vertical-align:top;padding:4px;border-bottom:1px solid #ddd;overflow:hidden}
td img{display:block;width:100%;height:auto}
.id{font-weight:600}.muted{color:#777;font-size:11px;overflow-wrap:anywhere}
.nums{display:grid;grid-template-columns:repeat(3,auto);gap:0 6px;margin:3px 0;font-size:12px;
  font-variant-numeric:tabular-nums;justify-content:start}
.nums span b{font-weight:normal;color:#666}
.warn{color:#b45f00;font-weight:600}.bad{color:#c00;font-weight:700}
.text{font-size:12px;display:-webkit-box;-webkit-line-clamp:4;-webkit-box-orient:vertical;overflow:hidden;cursor:pointer}
.text.open{display:block}
@media (min-width:1600px){body{font-size:14px}.nums,.text{font-size:13px}}
"""


def thumbnail(path, width):
    """A JPEG data URI of the image scaled to `width` px wide; '' if the file is not there."""
    from PIL import Image

    if path is None or not Path(path).is_file():
        return ""
    image = load_rgb(path)
    image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def init_banners(pred_dir, gt_dir):
    """{id: training bannerImage the prediction started from} from the method's manifest, else the retrieval top-1."""
    manifest, retrieval = Path(pred_dir) / "manifest.csv", Path(gt_dir) / "retrieval.csv"
    if manifest.is_file():
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        if {"id", "init_bannerImage"} <= set(df.columns):
            return dict(zip(df["id"], df["init_bannerImage"]))
    if retrieval.is_file():
        return {row_id: names[0] for row_id, names in dataset.read_retrieval(retrieval).items()}
    return {}


def _sort_value(x):
    if isinstance(x, float) and math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"  # what JS parseFloat reads as infinite (PSNR of identical images)
    return x


def _number(column, value):
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    text = f"{value:.2f}" if column in ("psnr", "clip_score") else f"{value:.3f}"
    if column == "duplication" and value > duplication.COMPETITION_FAIL:
        return f'<span class="bad">{text}</span>'
    if column == "duplication" and value > duplication.DUP_MAX:
        return f'<span class="warn">{text}</span>'
    return text


def _image_cell(uri, caption=""):
    caption = html.escape(caption)
    if not uri:
        return f'<td class="muted">{caption or "-"}</td>'
    return f'<td><img src="{uri}" loading="lazy" alt="{caption}"><span class="muted">{caption}</span></td>'


def write_gallery(path, rows, info, pred_dir, gt_dir, train_dir, report, thumb_width=384, beside=()):
    """Write the gallery for `rows` (evaluate's per-row table) with the texts of `info` (the ground truth's info.csv).
    `beside`: other prediction folders (another method, the run without the text layer) shown next to the prediction."""
    beside = [Path(b) for b in beside]
    init = init_banners(pred_dir, gt_dir)
    has_init = any(init.values())  # text-to-image (Method 2) has no init banner: no empty column for it
    image_columns = (IMAGE_COLUMNS[:3] if has_init else IMAGE_COLUMNS[1:3]) + [f"beside: {b.name}" for b in beside] \
        + IMAGE_COLUMNS[3:]
    train_images = Path(train_dir) / "images" if train_dir and str(train_dir).lower() != "none" else None
    texts = info.set_index("id")
    numbers = [(c, label, tip) for c, label, tip in NUMBERS if c in rows.columns]

    def train_path(name):
        return train_images / name if train_images and name else None

    body = []
    for row in rows.itertuples():
        t = texts.loc[row.id]
        copy = " ".join(f"<b>{html.escape(t[k])}</b>" if k == "caption" else html.escape(t[k])
                        for k in ("caption", "description", "moreInfo") if t[k])
        init_name = (init.get(row.id) or "").split(";")[0] or None  # POSTPROCESS runs list both parts: "a.jpg;b.jpg"
        near_name = getattr(row, "dup_train_bannerImage", None)
        nums = "".join(f'<span title="{html.escape(tip)}"><b>{label}</b> {_number(c, getattr(row, c))}</span>'
                       for c, label, tip in numbers)
        data = " ".join(f'data-{c}="{_sort_value(getattr(row, c))}"' for c, _, _ in numbers)
        cells = [f'<td><span class="id">{html.escape(row.id)}</span> <span class="muted">{html.escape(row.bannerImage)}'
                 f'</span><div class="nums">{nums}</div><div class="text" title="click to show all" '
                 f'onclick="this.classList.toggle(\'open\')">{copy}</div></td>',
                 *([_image_cell(thumbnail(train_path(init_name), thumb_width), init_name or "")] if has_init else []),
                 (_image_cell("", "not measured (no training pool)") if not near_name
                  else _image_cell(thumbnail(train_path(near_name), thumb_width), near_name) if near_name != init_name
                  else _image_cell("", f"the init banner ({near_name})")),
                 _image_cell(thumbnail(Path(pred_dir) / row.bannerImage, thumb_width)),
                 *[_image_cell(thumbnail(b / row.bannerImage, thumb_width),
                               "" if (b / row.bannerImage).is_file() else "not in this folder") for b in beside],
                 _image_cell(thumbnail(Path(gt_dir) / "images" / row.bannerImage, thumb_width))]
        body.append(f'<tr data-id="{html.escape(row.id)}" {data}>' + "".join(cells) + "</tr>")
    summary = ", ".join(f"{k} {report[k]:.4f}" for k in ("score", "psnr_term", "ssim_term", "inception_term", "fid_term",
                                                        "fid", "duplication_mean", "duplication_max")
                        if report.get(k) is not None)
    if report.get("dup_over_guard") is not None:
        summary += (f"; duplication over the guard {duplication.DUP_MAX}: {report['dup_over_guard']}, over the "
                    f"competition's estimated {duplication.COMPETITION_FAIL}: {report['dup_over_competition']}")
    buttons = '<button data-key="id">id</button>' + "".join(
        f'<button data-key="{c}" title="{html.escape(tip)}">{label}</button>' for c, label, tip in numbers)
    title = f"{html.escape(str(pred_dir))} vs {html.escape(str(gt_dir))}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><title>{title}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{title}</h1><p>n {len(rows)}: {summary} (lower score is better)</p>"
            f"<div id='sort'>sort by: {buttons}</div></header>"
            f"<table><colgroup><col class='meta'>" + "<col class='image'>" * len(image_columns) + "</colgroup>"
            "<thead><tr><th>row, numbers, copy</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in image_columns)
            + "</tr></thead><tbody>\n" + "\n".join(body) + f"\n</tbody></table><script>{SORT_JS}</script></body></html>\n")
    atomic_write(path, page)
