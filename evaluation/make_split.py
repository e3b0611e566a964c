"""
Deterministic validation split of a training folder, written as a normal DATA_DIR so every method runs on it unchanged:

    SPLIT_DIR/train/{info.csv, images/}   the rows kept for training / retrieval
    SPLIT_DIR/test/{info.csv, images/}    the held-out rows; test/images are the GROUND TRUTH for evaluation
    SPLIT_DIR/split.json                  how it was made

Which rows go to test depends only on (SEED, id): rows are ordered by seeds.row_seed(SEED, id) and the first
round(FRACTION * n) are held out, so the split ignores file order. A sibling `info_trans.csv` (the translation stage's
output) is split the same way, so the split needs no new translation, and so are the VLM captions (llava_caption.json:
the split's train rows keep theirs). Images are symlinks (default) or copies.

usage: bash run/evaluate.sh split --SOURCE_DIR=/path/to/train --SPLIT_DIR=data/val_split [--FRACTION=0.1]
then:  DATA_DIR=data/val_split bash run/<method>.sh; bash run/evaluate.sh --PRED_DIR=... --GT_DIR=data/val_split/test
"""
import os
from pathlib import Path

from core import dataset, files, knobs
from core.dataset import read_info
from core.files import write_csv, write_json
from core.knobs import InputError
from core.progress import progress
from core.seeds import row_seed

DATA_DIR = "data"  # the data folder (also from env DATA_DIR): its train/ is the default SOURCE_DIR
SEED = 0  # which rows are held out: the same seed and ids always give the same split
FRACTION = 0.1  # share of rows held out as the validation "test" split (0.1 of 1362 -> 136 rows)
SOURCE_DIR = ""  # the training folder to split (info.csv + images/); default $DATA_DIR/train
SPLIT_DIR = "data/val_split"  # where the new DATA_DIR-style folder is written
LINK = "symlink"  # symlink | copy: how images get into the split (copy when the split must move between machines)


def choose_test_ids(ids, seed, fraction):
    """The held-out ids: ordered by a per-id hash of the seed, the first round(fraction * n), at least 1, at most n-1."""
    if not 0 < fraction < 1:
        raise InputError(f"FRACTION must be between 0 and 1, got {fraction}")
    if len(ids) < 2:
        raise InputError(f"need at least 2 rows to split, got {len(ids)}")
    k = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    return set(sorted(ids, key=lambda i: row_seed(seed, i))[:k])


def place_image(src, dst, link):
    """Put `src` at `dst` as a symlink or a copy; an existing correct one is kept (reruns are cheap)."""
    src = Path(src).resolve()
    if dst.is_symlink() or dst.exists():
        if link == "symlink" and dst.is_symlink() and Path(os.readlink(dst)) == src:
            return
        if link == "copy" and not dst.is_symlink() and dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    if link == "symlink":
        dst.symlink_to(src)
    else:
        files.atomic_write(dst, src.read_bytes())


def make_split(source_dir, split_dir, seed, fraction, link="symlink"):
    """Write the split; returns (train DataFrame, test DataFrame). Refuses to overwrite a different split."""
    if link not in ("symlink", "copy"):
        raise InputError(f"LINK must be symlink or copy, got {link!r}")
    source_dir, split_dir = Path(source_dir), Path(split_dir)
    info = read_info(source_dir / "info.csv", check_images=True)
    test_ids = choose_test_ids(info["id"].tolist(), seed, fraction)
    parts = {"train": info[~info["id"].isin(test_ids)], "test": info[info["id"].isin(test_ids)]}
    recipe = {"source": str(source_dir.resolve()), "seed": seed, "fraction": fraction,
              "n_train": len(parts["train"]), "n_test": len(parts["test"])}
    old = files.read_json(split_dir / "split.json")
    if old is not None and {k: old.get(k) for k in recipe} != recipe:
        raise InputError(f"{split_dir} already holds another split ({old}); delete it or choose another SPLIT_DIR")
    trans = source_dir / "info_trans.csv"
    trans_df = None
    if trans.is_file():
        trans_df = read_info(trans)
    for name, df in parts.items():
        images = split_dir / name / "images"
        images.mkdir(parents=True, exist_ok=True)
        wanted = set(df["bannerImage"])
        for stale in images.iterdir():  # a rerun after the source changed must not keep rows that left the split
            if stale.name not in wanted:
                stale.unlink()
        for banner in progress(df["bannerImage"], desc=f"split: {name} images", unit="img"):
            place_image(source_dir / "images" / banner, images / banner, link)
        write_csv(split_dir / name / "info.csv", df)
        if trans_df is not None:
            write_csv(split_dir / name / "info_trans.csv", trans_df[trans_df["id"].isin(set(df["id"]))])
    captions = files.read_json(source_dir / "llava_caption.json")
    if isinstance(captions, dict):  # VLM captions are paid work: the split's train rows keep theirs (Method 2)
        kept = {b: captions[b] for b in parts["train"]["bannerImage"] if b in captions}
        write_json(split_dir / "train" / "llava_caption.json", kept)
        # with the record of what made them (same rows, copy and banners): the caption stage counts them as done
        files.ItemRecords(source_dir / "llava_caption_report.json").save(split_dir / "train" /
                                                                         "llava_caption_report.json", kept)
    write_json(split_dir / "split.json", recipe)
    return parts["train"], parts["test"]


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    source = Path(cfg.SOURCE_DIR) if cfg.SOURCE_DIR else dataset.split_dir("train", cfg.DATA_DIR)
    train, test = make_split(source, cfg.SPLIT_DIR, cfg.SEED, cfg.FRACTION, cfg.LINK)
    print(f"split of {source}: {len(train)} train + {len(test)} test rows -> {cfg.SPLIT_DIR} "
          f"(DATA_DIR={cfg.SPLIT_DIR}, --GT_DIR={Path(cfg.SPLIT_DIR) / 'test'})")


if __name__ == "__main__":
    knobs.run_main(main)
