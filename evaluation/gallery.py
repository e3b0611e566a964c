"""
A self-contained gallery.html of an evaluated run: one table row per banner with its text, the init/retrieved training
banner (PRED_DIR/manifest.csv's init_bannerImage, else GT_DIR/retrieval.csv's rank-1 train_bannerImage), the nearest
training banner by duplication, the prediction, the ground truth and the per-row numbers. Click a header to sort by it.
Images are small JPEG data URIs, so the one file opens anywhere (mail it, open it from a zip).
"""
import base64
import html
import io
from pathlib import Path

import pandas as pd

from core import dataset
from core.files import atomic_write
from core.images import load_rgb

NUMBER_COLUMNS = ["row_score", "psnr", "ssim", "inception_cos", "psnr_term", "ssim_term", "inception_term", "duplication",
                  "clip_score"]

SORT_JS = """
document.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], up = th.dataset.dir !== 'up';
  th.dataset.dir = up ? 'up' : 'down';
  const key = tr => { const v = tr.cells[col].dataset.v ?? tr.cells[col].textContent;
                      const n = parseFloat(v); return isNaN(n) ? v : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); }).forEach(tr => body.appendChild(tr));
}));
"""

STYLE = """
body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;
vertical-align:top;font-size:13px}th{cursor:pointer;background:#eee;position:sticky;top:0}th:hover{background:#ddd}
.text{max-width:260px}.muted{color:#888}img{display:block}
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
    return "Infinity" if x == float("inf") else x  # what JS parseFloat reads as infinite (PSNR of identical images)


def _image_cell(uri, caption=""):
    if not uri:
        return f'<td class="muted" data-v="{html.escape(caption)}">{html.escape(caption) or "-"}</td>'
    return f'<td data-v="{html.escape(caption)}"><img src="{uri}" loading="lazy"><span class="muted">{html.escape(caption)}</span></td>'


def write_gallery(path, rows, info, pred_dir, gt_dir, train_dir, report, thumb_width=320):
    """Write the gallery for `rows` (evaluate's per-row table) with the texts of `info` (the ground truth's info.csv)."""
    init = init_banners(pred_dir, gt_dir)
    train_images = Path(train_dir) / "images" if train_dir and str(train_dir).lower() != "none" else None
    texts = info.set_index("id")
    numbers = [c for c in NUMBER_COLUMNS if c in rows.columns]
    head = ["id", "text", "init / retrieved", "nearest training", "prediction", "ground truth"] + numbers
    body = []
    for row in rows.itertuples():
        t = texts.loc[row.id]
        text = "<br>".join(f"<b>{k}</b>: {html.escape(t[k])}" for k in ("caption", "description", "moreInfo") if t[k])
        init_name = (init.get(row.id) or "").split(";")[0] or None  # POSTPROCESS runs list both parts: "a.jpg;b.jpg"
        near_name = getattr(row, "dup_train_bannerImage", None)
        find = (lambda n: train_images / n if train_images and n else None)
        cells = [f"<td>{html.escape(row.id)}<br><span class='muted'>{html.escape(row.bannerImage)}</span></td>",
                 f'<td class="text">{text}</td>',
                 _image_cell(thumbnail(find(init_name), thumb_width), init_name or ""),
                 (_image_cell(thumbnail(find(near_name), thumb_width), near_name or "") if near_name != init_name
                  else _image_cell("", f"the init banner ({near_name})")),
                 _image_cell(thumbnail(Path(pred_dir) / row.bannerImage, thumb_width)),
                 _image_cell(thumbnail(Path(gt_dir) / "images" / row.bannerImage, thumb_width))]
        cells += [f'<td data-v="{_sort_value(getattr(row, c))}">{getattr(row, c):.4f}</td>' for c in numbers]
        body.append("<tr>" + "".join(cells) + "</tr>")
    summary = ", ".join(f"{k} {report[k]:.4f}" for k in ("score", "psnr_term", "ssim_term", "inception_term", "fid_term", "fid",
                                                        "duplication_mean", "duplication_max") if report.get(k) is not None)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(str(pred_dir))}</title>"
            f"<style>{STYLE}</style></head><body><h3>{html.escape(str(pred_dir))} vs {html.escape(str(gt_dir))}</h3>"
            f"<p>n {len(rows)}: {summary} (lower score is better; click a header to sort)</p><table><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>\n" + "\n".join(body)
            + f"\n</tbody></table><script>{SORT_JS}</script></body></html>\n")
    atomic_write(path, page)
