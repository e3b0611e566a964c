"""
Several evaluated prediction folders side by side, from their report.json: a Markdown table on stdout and a CSV.

    bash run/evaluate.sh compare --PRED_DIRS=inference/method_1,outputs/baselines/mean_color
    (each folder must have been scored first: bash run/evaluate.sh --PRED_DIR=... --GT_DIR=...)

Rows keep the order given; the best (lowest) score is bold. Runs scored against different ground truths or row
counts are flagged, since their numbers do not compare. The table is pandas' `to_markdown` (tabulate).
"""
import sys
from pathlib import Path

import pandas as pd

from core import knobs
from core.knobs import InputError
from core.files import read_json, write_csv

PRED_DIRS = ""  # comma-separated prediction folders, each holding a report.json from evaluation.evaluate
NAMES = ""  # optional comma-separated labels, one per folder (default: the folder names)
OUT_CSV = "outputs/compare.csv"  # where the table is also written as CSV ("" to skip)

# dup_over_guard / dup_over_competition: rows over duplication.DUP_MAX (0.85) / COMPETITION_FAIL (0.89)
COLUMNS = ["score", "psnr_term", "ssim_term", "inception_term", "fid_term", "fid", "duplication_mean", "duplication_max",
           "dup_over_guard", "dup_over_competition", "n", "seconds_per_image"]


def compare(pred_dirs, names=None):
    """A DataFrame with one row per folder: its label, the report's numbers, and its ground truth."""
    rows = []
    for i, folder in enumerate(pred_dirs):
        report = read_json(Path(folder) / "report.json")
        if report is None:
            raise InputError(f"{folder}: no report.json (score it first: bash run/evaluate.sh --PRED_DIR={folder} "
                             f"--GT_DIR=...)")
        label = names[i] if names else Path(folder).name
        rows.append({"run": label, **{c: report.get(c) for c in COLUMNS}, "gt_dir": report.get("gt_dir")})
    table = pd.DataFrame(rows)
    if table["gt_dir"].nunique() > 1 or table["n"].nunique() > 1:
        print("warning: these runs were scored against different ground truths or row counts; their numbers do not "
              "compare", file=sys.stderr)
    return table


def to_markdown(table):
    """A GitHub Markdown table of the columns that have a value; the lowest score is bold, empty cells read "-"."""
    cols = [c for c in ["run"] + COLUMNS if c in table.columns and table[c].notna().any()]
    shown = table[cols].astype(object)
    best = table["score"].min()
    for col in cols:
        digits = {"fid": 2, "n": 0, "dup_over_guard": 0, "dup_over_competition": 0}.get(col, 4)  # counts
        if pd.api.types.is_numeric_dtype(table[col]):
            shown[col] = [("-" if pd.isna(v) else f"{v:.{digits}f}") for v in table[col]]
    shown["score"] = [f"**{text}**" if v == best else text for v, text in zip(table["score"], shown["score"])]
    align = ["left" if col == "run" else "right" for col in cols]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    dirs = [d.strip() for d in cfg.PRED_DIRS.split(",") if d.strip()]
    if not dirs:
        raise InputError("pass --PRED_DIRS=a,b,... (evaluated prediction folders, comma-separated)")
    names = [n.strip() for n in cfg.NAMES.split(",")] if cfg.NAMES else None
    if names and len(names) != len(dirs):
        raise InputError(f"NAMES has {len(names)} labels for {len(dirs)} folders")
    table = compare(dirs, names)
    print(to_markdown(table))
    if cfg.OUT_CSV:
        write_csv(cfg.OUT_CSV, table)
        print(f"wrote {cfg.OUT_CSV}")


if __name__ == "__main__":
    knobs.run_main(main)
