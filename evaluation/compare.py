"""
Several evaluated prediction folders side by side, from their report.json: a Markdown table on stdout and a CSV.

    bash run/evaluate.sh compare --PRED_DIRS=inference/method_1,outputs/baselines/mean_color
    (each folder must have been scored first: PRED_DIR=... GT_DIR=... bash run/evaluate.sh)

Rows keep the order given; the best (lowest) score is marked. Runs scored against different ground truths or row
counts are flagged, since their numbers do not compare.
"""
from pathlib import Path

import pandas as pd

from core import knobs
from core.knobs import InputError
from core.files import read_json, write_csv

PRED_DIRS = ""  # comma-separated prediction folders, each holding a report.json from evaluation.evaluate
NAMES = ""  # optional comma-separated labels, one per folder (default: the folder names)
OUT_CSV = "outputs/compare.csv"  # where the table is also written as CSV ("" to skip)
knobs.configure(globals())

COLUMNS = ["score", "psnr_term", "ssim_term", "inception_term", "fid_term", "fid", "duplication_mean", "duplication_max",
           "n", "seconds_per_image"]


def compare(pred_dirs, names=None):
    """A DataFrame with one row per folder: its label, the report's numbers, and its ground truth."""
    rows = []
    for i, folder in enumerate(pred_dirs):
        report = read_json(Path(folder) / "report.json")
        if report is None:
            raise InputError(f"{folder}: no report.json (score it first: PRED_DIR={folder} GT_DIR=... bash run/evaluate.sh)")
        label = names[i] if names else Path(folder).name
        rows.append({"run": label, **{c: report.get(c) for c in COLUMNS}, "gt_dir": report.get("gt_dir")})
    table = pd.DataFrame(rows)
    if table["gt_dir"].nunique() > 1 or table["n"].nunique() > 1:
        print("warning: these runs were scored against different ground truths or row counts; their numbers do not compare")
    return table


def to_markdown(table):
    """A GitHub Markdown table (no tabulate dependency); the lowest score is bold."""
    cols = [c for c in ["run"] + COLUMNS if c in table.columns and table[c].notna().any()]
    best = table["score"].min()

    def fmt(col, value):
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "-"
        if col == "n":
            return str(int(value))
        if isinstance(value, float):
            text = f"{value:.2f}" if col == "fid" else f"{value:.4f}"
            return f"**{text}**" if col == "score" and value == best else text
        return str(value)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(c, row[c]) for c in cols) + " |" for _, row in table.iterrows()]
    return "\n".join(lines)


def main():
    dirs = [d.strip() for d in PRED_DIRS.split(",") if d.strip()]
    if not dirs:
        raise InputError("set PRED_DIRS to a comma-separated list of evaluated prediction folders")
    names = [n.strip() for n in NAMES.split(",")] if NAMES else None
    if names and len(names) != len(dirs):
        raise InputError(f"NAMES has {len(names)} labels for {len(dirs)} folders")
    table = compare(dirs, names)
    print(to_markdown(table))
    if OUT_CSV:
        write_csv(OUT_CSV, table)
        print(f"wrote {OUT_CSV}")


if __name__ == "__main__":
    knobs.run_main(main)
