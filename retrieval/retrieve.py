"""
Retrieval stage: for every test row, the TOP_K most similar training rows -> $DATA_DIR/test/retrieval.csv

    id, bannerImage, rank, train_id, train_bannerImage, score      (TOP_K rows per test row, rank 1 = best)

MODE=text (the seed's Method 1): a sentence-transformers model over the Vietnamese caption of test vs train rows.
MODE=clip_text_image: open_clip's text tower over the English translation (test/info_trans.csv) vs its image tower over
the training banners.

Embeddings are kept as indexes under $DATA_DIR/<split>/index/ and rebuilt only when the inputs or the model change
(a changed caption re-encodes that row only). Several GPUs: `accelerate launch -m retrieval.retrieve` (each process
encodes a share of the rows; rank 0 assembles the same index and writes the CSV).
"""
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

import models
from core import dataset, devices, files, knobs
from core.copy_text import normalize_copy
from core.knobs import InputError

DATA_DIR = "data"  # the data folder: train/ and test/ (also from env DATA_DIR: the run/*.sh contract)
MODE = "text"  # "text" (caption -> captions, the seed) or "clip_text_image" (English text -> train banners)
TEXT_MODEL = models.BI_ENCODER  # MODE=text: sentence-transformers hub id[@revision] or folder
QUERY_FIELDS = "caption"  # MODE=text: test info.csv columns joined into the query text (comma-separated)
POOL_FIELDS = "caption"  # MODE=text: train info.csv columns joined into the pool text
WORD_SEGMENT = "auto"  # pyvi word segmentation: auto (the model asks: its id, or its folder's card/config) / on / off
CLIP_MODEL = models.CLIP  # MODE=clip_text_image: open_clip hub id[@revision], folder, or ARCH:TAG
CLIP_QUERY_FIELDS = "caption,description"  # MODE=clip_text_image: test info_trans.csv (English) columns for the query
IMAGE_RESIZE_MODE = "longest"  # banners into CLIP's square: longest (pad, whole banner) / shortest (crop) / squash
FIELD_SEPARATOR = ". "  # joins the fields of one row
TOP_K = 5  # neighbours per test row (Method 1 uses rank 1; the others are fallbacks for the duplication guard)
INDEX_DTYPE = "fp16"  # stored embeddings: fp16 (half the disk, cosine error ~1e-3) or fp32
BATCH_SIZE = 64  # rows per encoder call
PART_SIZE = 4096  # rows per resumable part of an index build (and per process share under accelerate)
SEARCH_CHUNK = 32768  # pool rows per matrix product during search (bounds memory)
DEVICE = "auto"  # auto (cuda if there, else cpu), cpu, cuda, cuda:1 ...
TRUST_REMOTE_CODE = False  # let a sentence-transformers model run code from its repository


def row_texts(df, fields, what, separator=FIELD_SEPARATOR):
    columns = [c.strip() for c in fields.split(",") if c.strip()]
    missing = [c for c in columns if c not in df.columns]
    if not columns or missing:
        raise InputError(f"{what}: field(s) {missing or fields!r} not among the columns {list(df.columns)}")
    def join(cols):
        return [separator.join(t for t in map(normalize_copy, values) if t) for values in zip(*(df[c] for c in cols))]

    texts = join(columns)
    # a row whose chosen fields are all empty falls back to its other copy rather than stopping the stage
    other = [c for c in dataset.TEXT_COLUMNS if c in df.columns and c not in columns]
    if other and not all(texts):
        fallback = join(other)
        texts = [t or f for t, f in zip(texts, fallback)]
    empty = [df.id[i] for i, t in enumerate(texts) if not t]
    if empty:
        raise InputError(f"{what}: no text at all (caption, description, moreInfo) for row id(s) {empty[:10]}")
    return texts


def index_name(encoder, fields):
    """A readable folder name per (encoder, fields); the content key inside decides whether it is current."""
    model = encoder.spec["model"]
    if encoder.stand_in:  # SMOKE=1's tiny model, whatever the knob names
        model = "smoke"
    elif os.path.isdir(os.path.expanduser(model)):  # a local folder: its last two path parts
        model = "/".join(Path(os.path.expanduser(model)).resolve().parts[-2:])
    model = re.sub(r"[^A-Za-z0-9._-]+", "--", model)
    return f"{encoder.kind}__{model}__{fields.replace(',', '+')}" if fields else f"{encoder.kind}__{model}"


def build(cfg, encoder, split, items, ids, fields, rank, world_size):
    from retrieval.index import build_index

    folder = dataset.split_dir(split, cfg.DATA_DIR) / "index" / index_name(encoder, fields)
    index, encoded = build_index(folder, encoder, items, ids, dtype=cfg.INDEX_DTYPE, part_size=cfg.PART_SIZE,
                                 batch_size=cfg.BATCH_SIZE, rank=rank, world_size=world_size,
                                 desc=f"{split} {encoder.kind}")
    if rank == 0:
        by = f" by rank 0 of {world_size}" if world_size > 1 else ""
        print(f"{split} index {folder}: {index.n} rows, {encoded} encoded now{by}", flush=True)
    return index


def main(argv=None):
    from retrieval.encoders import ClipImageEncoder, ClipTextEncoder, TextEncoder
    from core.nearest import nearest

    cfg = knobs.configure(globals(), argv)
    if cfg.TOP_K < 1:  # before any model loads or any index is built
        raise InputError(f"TOP_K must be >= 1, got {cfg.TOP_K}")
    knobs.announce_smoke("retrieval", cfg.SMOKE)
    rank, world_size, device = devices.process_info()
    device = device if cfg.DEVICE == "auto" else cfg.DEVICE
    train_csv, test_csv = dataset.split_dir("train", cfg.DATA_DIR) / "info.csv", dataset.split_dir("test", cfg.DATA_DIR) / "info.csv"
    train = dataset.read_info(train_csv)
    test = dataset.read_info(test_csv)
    for split in ("train", "test"):  # the indexes and retrieval.csv are written there: refused before any model loads
        files.check_writable(dataset.split_dir(split, cfg.DATA_DIR), f"the {split} folder", "a writable --DATA_DIR")
    if cfg.MODE == "text":
        encoder = TextEncoder(cfg.TEXT_MODEL, device=device, batch_size=cfg.BATCH_SIZE, word_segment=cfg.WORD_SEGMENT,
                              trust_remote_code=cfg.TRUST_REMOTE_CODE, smoke=cfg.SMOKE)
        pool = build(cfg, encoder, "train", row_texts(train, cfg.POOL_FIELDS, train_csv, cfg.FIELD_SEPARATOR), train.id, cfg.POOL_FIELDS, rank,
                     world_size)
        query_encoder, query_items, query_fields = encoder, row_texts(test, cfg.QUERY_FIELDS, test_csv, cfg.FIELD_SEPARATOR), cfg.QUERY_FIELDS
    elif cfg.MODE == "clip_text_image":
        trans_csv = dataset.split_dir("test", cfg.DATA_DIR) / "info_trans.csv"
        if not trans_csv.is_file():
            raise InputError(f"{trans_csv}: not found; MODE=clip_text_image needs the English translation "
                             f"(bash run/translation.sh)")
        dataset.check_translation(trans_csv.parent)  # a translation of another info.csv: refused in one line
        trans = dataset.read_info(trans_csv)
        if list(trans.id) != list(test.id):
            raise InputError(f"{trans_csv}: ids differ from {test_csv} in order (rerun the translation)")
        images_dir = dataset.split_dir("train", cfg.DATA_DIR) / "images"
        # existence up front (fast); an unreadable file fails while encoding, naming it, and finished parts are kept
        missing = [i for i, b in zip(train.id, train.bannerImage) if not (images_dir / b).is_file()]
        if missing:
            raise InputError(f"{images_dir}: banner missing for train row id(s) {missing[:10]}")
        image_encoder = ClipImageEncoder(cfg.CLIP_MODEL, device=device, batch_size=cfg.BATCH_SIZE,
                                         image_resize_mode=cfg.IMAGE_RESIZE_MODE, smoke=cfg.SMOKE)
        pool = build(cfg, image_encoder, "train", [str(images_dir / b) for b in train.bannerImage], train.id, "",
                     rank, world_size)
        query_encoder = ClipTextEncoder(cfg.CLIP_MODEL, device=device, batch_size=cfg.BATCH_SIZE,
                                        image_resize_mode=cfg.IMAGE_RESIZE_MODE, smoke=cfg.SMOKE)
        query_items, query_fields = row_texts(trans, cfg.CLIP_QUERY_FIELDS, trans_csv, cfg.FIELD_SEPARATOR), cfg.CLIP_QUERY_FIELDS
    else:
        raise InputError(f"MODE must be text or clip_text_image, got {cfg.MODE!r}")
    queries = build(cfg, query_encoder, "test", query_items, test.id, query_fields, rank, world_size)
    if rank != 0:
        return
    if cfg.TOP_K > pool.n:
        print(f"warning: TOP_K={cfg.TOP_K} but only {pool.n} train rows: {pool.n} neighbours per row", flush=True)
    rows, scores = nearest(queries.embeddings(), pool, cfg.TOP_K, chunk_rows=cfg.SEARCH_CHUNK, device=device,
                           progress="search")
    # the indexes carry their ids; map back through them, never through positions in a CSV that may have changed
    train_banner = dict(zip(train.id, train.bannerImage))
    test_banner = dict(zip(test.id, test.bannerImage))
    k = rows.shape[1]
    out = pd.DataFrame({
        "id": [i for i in queries.ids for _ in range(k)],
        "bannerImage": [test_banner[i] for i in queries.ids for _ in range(k)],
        "rank": [r + 1 for _ in queries.ids for r in range(k)],
        "train_id": [pool.ids[j] for j in rows.reshape(-1)],
        "score": [f"{s:.6f}" for s in np.clip(scores.reshape(-1), -1.0, 1.0)],  # cosines: fp16 rounding can pass 1
    })
    out.insert(4, "train_bannerImage", [train_banner[i] for i in out.train_id])
    path = dataset.split_dir("test", cfg.DATA_DIR) / "retrieval.csv"
    files.write_csv(path, out)
    print(f"wrote {path}: {len(test)} test rows x {k} neighbours ({cfg.MODE}; mean top-1 score "
          f"{scores[:, 0].mean():.4f})", flush=True)


if __name__ == "__main__":
    knobs.run_main(main)
