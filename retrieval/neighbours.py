"""
The Python API other stages call (the CLI stage is `retrieval.retrieve`):

    from retrieval.encoders import TextEncoder, ClipImageEncoder
    from retrieval.neighbours import retrieve

    enc = TextEncoder("sentence-transformers/all-MiniLM-L6-v2", smoke=False)  # smoke: the run's cfg.SMOKE
    rows, scores = retrieve(test_texts, train_texts, enc, k=2)            # (m, k) train row numbers, cosines
    rows, scores = retrieve(test_texts, train_texts, enc, k=2, index_dir=DATA_DIR / "train/index/minilm")  # cached


Queries and pool are lists of texts or image paths (encoded by the given encoder), or already-made embeddings:
a (n, dim) array, or an `Index` for the pool.
"""
import numpy as np

from core.nearest import nearest
from retrieval.index import Index, build_index


def embed(items, encoder):
    """(n, dim) float32 L2-normalised embeddings of texts / image paths, or the array itself if already embedded."""
    if isinstance(items, np.ndarray) or hasattr(items, "numpy"):
        return np.asarray(items, dtype=np.float32)
    return encoder.encode(list(items))


def pool_of(pool, encoder, index_dir=None, ids=None, **build_kwargs):
    """An `Index` (kept on disk in index_dir, rebuilt only when inputs change) or an in-memory array for `pool`."""
    if isinstance(pool, Index) or isinstance(pool, np.ndarray) or hasattr(pool, "numpy"):
        return pool
    if index_dir is None:
        return embed(pool, encoder)
    ids = list(range(len(pool))) if ids is None else ids
    index, _ = build_index(index_dir, encoder, list(pool), ids, progress=build_kwargs.pop("progress", False),
                           **build_kwargs)
    return index


def retrieve(queries, pool, encoder, k, query_encoder=None, index_dir=None, pool_ids=None, exclude_self=False,
             chunk_rows=32768, device="cpu", **build_kwargs):
    """For each query the k most similar pool rows: (rows int64 (m, k), scores float32 (m, k)), best first.

    query_encoder: when queries and pool need different towers (CLIP text -> image); default: `encoder`.
    exclude_self: the queries are the pool itself (same order): a row never retrieves itself.
    """
    pool = pool_of(pool, encoder, index_dir, pool_ids, **build_kwargs)
    q = embed(queries, query_encoder or encoder)
    exclude = np.arange(len(q)) if exclude_self else None
    return nearest(q, pool, k, chunk_rows=chunk_rows, device=device, exclude=exclude)
