"""
The project's one nearest-neighbour search: exact top-k by dot product of every query against a pool, by chunked
matrix products. Retrieval's text/image search, the duplication measure (evaluation and Method 1's guard) and the
guard's calibration all call it.

The pool is anything with `.shape` (n, dim) whose rows read by a slice, `pool[start:stop]`: an (n, dim) array or
tensor, or retrieval's on-disk `Index` (which reads only that slice from its file, so a pool larger than RAM works).
For each pool chunk: scores = queries @ chunk.T, its top-k, merged with the running top-k. Memory: queries + one chunk +
(queries x chunk) scores, whatever the pool size. With L2-normalised rows the dot product is the cosine. Among equal
scores the lower pool row wins, whatever the chunk sizes. Equal means equal to the bit: the BLAS matrix product may
score a row and its exact duplicate one last bit apart, depending on their places in the product (seen with MKL).
"""
import numpy as np
import torch

from core.progress import progress as progress_bar


def _pool_chunks(pool, chunk_rows, device, dtype):
    """Yield (start, chunk on device in `dtype`) over the pool's rows in order.

    The chunk lands in one preallocated buffer reused for every chunk: a fresh 64 MB tensor per chunk costs page
    faults that add ~10-20 % to the search on a CPU.
    """
    n, dim = pool.shape
    buffer = torch.empty((min(chunk_rows, n), dim), dtype=dtype, device=device)
    for start in range(0, n, chunk_rows):
        stored = torch.as_tensor(pool[start:start + chunk_rows])
        yield start, buffer[:len(stored)].copy_(stored)


def _merge(best_scores, best_rows, scores, rows, k):
    """Top-k of the union of two candidate lists per query; on equal scores the lower row wins."""
    s = torch.cat([best_scores, scores], dim=1)
    r = torch.cat([best_rows, rows], dim=1)
    # sort by row first, then a stable sort by score keeps lower rows ahead among equal scores
    order = torch.argsort(r, dim=1)
    s, r = torch.gather(s, 1, order), torch.gather(r, 1, order)
    order = torch.argsort(s, dim=1, descending=True, stable=True)[:, :k]
    return torch.gather(s, 1, order), torch.gather(r, 1, order)


def _topk_lowest_rows_on_ties(scores, k):
    """torch.topk, except that among equal scores at the cut the lowest rows are kept (topk picks any of them, so
    duplicate captions would get a neighbour that depends on the chunk size). One extra candidate tells which query
    rows have a tie across the cut; only those (rare: duplicate embeddings) take the exact, slower rule."""
    n = scores.shape[1]
    values, rows = torch.topk(scores, min(k + 1, n), dim=1)  # sorted, best first
    top_scores, top_rows = values[:, :k].contiguous(), rows[:, :k].contiguous()
    if n > k:
        tied = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)
        if len(tied):
            sub, cut = scores[tied], values[tied, k - 1:k]
            greater, equal = sub > cut, sub == cut
            take = greater | (equal & (equal.cumsum(1) <= k - greater.sum(1, keepdim=True)))
            exact = take.nonzero()[:, 1].view(-1, k)
            top_rows[tied], top_scores[tied] = exact, sub.gather(1, exact)
    return top_scores, top_rows


def nearest(queries, pool, k, chunk_rows=32768, query_rows=4096, device="cpu", exclude=None, progress=None,
            dtype=torch.float32):
    """Top-k pool rows for each query by dot product: (rows int64 (m, k), scores (m, k) in `dtype`), best first.

    queries: (m, dim) array/tensor; pool: (n, dim) array/tensor or an object with `.shape` and `pool[start:stop]`.
    Normalise both for cosines. k is capped at the pool size (less one with `exclude`).
    exclude: optional (m,) pool row per query to skip (e.g. the query's own row when searching a pool against itself).
    progress: a label to show a progress bar over the pool's rows.
    dtype: the arithmetic's precision (torch.float64 for the duplication measure, whose level is a fixed threshold).
    """
    queries = queries if torch.is_tensor(queries) else torch.as_tensor(np.asarray(queries))
    queries = queries.to(device=device, dtype=dtype)
    n, dim = pool.shape
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"queries of shape {tuple(queries.shape)} against a pool of dim {dim}")
    k = min(int(k), n - (1 if exclude is not None else 0))
    if k < 1:
        raise ValueError(f"a pool of {n} row(s) leaves none to search{' besides the excluded one' if n else ''}")
    m = len(queries)
    best_scores = torch.full((m, k), -torch.inf, dtype=dtype, device=device)
    best_rows = torch.full((m, k), n, dtype=torch.int64, device=device)  # n = "no row yet", sorts last on ties
    excl = None if exclude is None else torch.as_tensor(np.asarray(exclude), dtype=torch.int64, device=device)
    # one scores buffer reused for every (query block, chunk) product, for the same reason as the chunk buffer
    scores_buffer = torch.empty(min(m, query_rows) * min(chunk_rows, n), dtype=dtype, device=device)
    bar = progress_bar(total=n, desc=progress, unit="row", unit_scale=True, disable=progress is None)
    for start, chunk in _pool_chunks(pool, chunk_rows, device, dtype):
        bar.update(len(chunk))
        kk = min(k, len(chunk))
        for q0 in range(0, m, query_rows):  # bounded scores matrix when there are many queries too
            q1 = min(m, q0 + query_rows)
            scores = scores_buffer[:(q1 - q0) * len(chunk)].view(q1 - q0, len(chunk))
            torch.matmul(queries[q0:q1], chunk.T, out=scores)
            if excl is not None:
                local = excl[q0:q1] - start
                hit = (local >= 0) & (local < len(chunk))
                scores[hit.nonzero().squeeze(1), local[hit]] = -torch.inf
            top_scores, top_rows = _topk_lowest_rows_on_ties(scores, kk)
            best_scores[q0:q1], best_rows[q0:q1] = _merge(best_scores[q0:q1], best_rows[q0:q1], top_scores,
                                                          top_rows + start, k)
    bar.close()
    return best_rows.cpu().numpy(), best_scores.cpu().numpy()
