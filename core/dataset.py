"""
The competition's tables: info.csv (id, caption, description, moreInfo, bannerImage) and the retrieval stage's
retrieval.csv, read and validated with errors that name the file, line, row id or column.
"""
from pathlib import Path

from core import files
from core.images import check_image
from core.knobs import InputError

INFO_COLUMNS = ["id", "caption", "description", "moreInfo", "bannerImage"]
TEXT_COLUMNS = ["caption", "description", "moreInfo"]


def split_dir(split, root):
    """`root/split` (train or test) of a data folder."""
    return Path(root) / split


def _read_csv(path):
    """A CSV of text columns (UTF-8 with or without BOM), empty cells as ""; one line naming the file if unreadable."""
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{path}: cannot parse CSV ({' '.join(str(e).split())})") from None  # pandas ends in \n


def _plain_names(names, path, column):
    """Names joined to an images/ or output folder: a path in one would read or write outside that folder."""
    bad = [b for b in names if b in (".", "..") or b != Path(b).name or "\\" in b]
    if bad:
        raise InputError(f"{path}: {column} must be a plain file name (no folders), got {bad[:10]}")


def read_info(path, images_dir=None, check_images=False):
    """Read and validate an info.csv; returns a pandas DataFrame of str columns in file order.

    Accepts UTF-8 with or without BOM, CRLF, quoted commas; empty/NaN text becomes "". Errors name the row/column/file:
    missing column, no row at all (a header alone: every stage would have nothing to do, and some would fail later on
    an empty list), missing id or bannerImage, duplicate id or bannerImage, and (check_images=True) a referenced image
    that is missing or unreadable in `images_dir` (default: `images/` beside the CSV).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    df = _read_csv(path)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in INFO_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {INFO_COLUMNS}")
    if df.empty:
        raise InputError(f"{path}: no rows under the header (nothing to work on)")
    for col in df.columns:
        df[col] = df[col].fillna("").astype(str)
    for col in ("id", "bannerImage"):
        df[col] = df[col].str.strip()
        empty = df.index[df[col] == ""].tolist()
        if empty:
            # data rows counted from 1 under the header (a quoted field may span lines, so no line number)
            raise InputError(f"{path}: empty {col} in data row(s) {[i + 1 for i in empty[:10]]}")
        dup = df[col][df[col].duplicated()].unique().tolist()
        if dup:
            raise InputError(f"{path}: duplicate {col} value(s) {dup[:10]}")
    _plain_names(df["bannerImage"], path, "bannerImage")
    for col in TEXT_COLUMNS:  # "nan" is what a NaN becomes when a pandas frame is written as text
        df[col] = df[col].map(lambda s: "" if s.strip().lower() == "nan" else s.strip())
    if check_images:
        images_dir = Path(images_dir) if images_dir else path.parent / "images"
        for row in df.itertuples():
            check_image(images_dir / row.bannerImage, f"row id={row.id}")
    return df.reset_index(drop=True)


TRANSLATION_RECORD = ".info_trans.json"  # beside info_trans.csv: the hash of the info.csv it was translated from


def check_translation(folder, name="info_trans.csv"):
    """Refuse a translation of another info.csv: rows (id -> bannerImage) that differ, or, where the translation stage
    recorded it, an info.csv whose bytes changed since (an edited caption would be generated from its old English)."""
    folder = Path(folder)
    source, translated = folder / "info.csv", folder / name
    if not (source.is_file() and translated.is_file()):
        return
    rows = [dict(zip(frame["id"], frame["bannerImage"])) for frame in (read_info(source), read_info(translated))]
    differ = sorted(set(rows[0].items()) ^ set(rows[1].items()))
    if differ:
        raise InputError(f"{translated}: its rows differ from info.csv (e.g. id={differ[0][0]} "
                         f"{differ[0][1]}): rerun bash run/translation.sh")
    made_from = (files.read_json(folder / TRANSLATION_RECORD, {}) or {}).get("info_csv_sha256")
    if name == "info_trans.csv" and made_from and made_from != files.file_hash(source):
        raise InputError(f"{translated} was translated from another info.csv ({source} changed since): rerun bash "
                         f"run/translation.sh")


def read_retrieval(path, ids=None, ranks=1):
    """{test id: [train bannerImage of rank 1, ..., rank `ranks`]} from the retrieval stage's retrieval.csv
    (id, bannerImage, rank, train_id, train_bannerImage, score). With `ids`, every one of them must have all ranks;
    errors name the file and the test row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (run bash run/retrieval.sh first)")
    df = _read_csv(path)
    missing = [c for c in ("id", "rank", "train_bannerImage") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    _plain_names(df["train_bannerImage"].str.strip(), path, "train_bannerImage")
    by_id = {}
    for line, rec in enumerate(df.itertuples(), start=2):
        try:
            rank = int(rec.rank)
        except ValueError:
            raise InputError(f"{path}: line {line}: rank {rec.rank!r} is not an integer") from None
        by_id.setdefault(rec.id.strip(), {})[rank] = rec.train_bannerImage.strip()
    out = {}
    for row_id in (by_id if ids is None else ids):
        names = [by_id.get(row_id, {}).get(rank) for rank in range(1, ranks + 1)]
        if not all(names):
            raise InputError(f"{path}: no rank-{names.index(None) + 1} train banner for test row id={row_id} "
                             f"(rerun retrieval)")
        out[row_id] = names
    return out
