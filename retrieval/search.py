"""
Exact top-k cosine search of every query against a pool, by chunked matrix products.

The pool is an `Index` on disk (read chunk by chunk through `safetensors.safe_open(...).get_slice`, so a pool larger
than RAM works) or an in-memory (n, dim) tensor. For each pool chunk: scores = queries @ chunk.T, its top-k, merged with
the running top-k. Memory: queries + one chunk + (queries x chunk) scores, whatever the pool size.
Rows are L2-normalised, so the dot product is the cosine. Among equal scores the merge prefers the lower pool row.
"""
import numpy as np
import torch
from core.progress import progress as progress_bar

from retrieval.index import TENSOR, Index


def _pool_chunks(pool, chunk_rows, device):
    """Yield (start, float32 chunk on device) over the pool's rows in order.

    The chunk lands in one preallocated buffer reused for every chunk: a fresh 64 MB tensor per chunk costs page
    faults that add ~10-20 % to the search on a CPU.
    """
    n = pool.n if isinstance(pool, Index) else len(pool)
    dim = pool.dim if isinstance(pool, Index) else pool.shape[1]
    buffer = torch.empty((min(chunk_rows, n), dim), dtype=torch.float32, device=device)
    if isinstance(pool, Index):
        from safetensors import safe_open

        with safe_open(str(pool.path), framework="pt") as f:
            rows = f.get_slice(TENSOR)
            for start in range(0, n, chunk_rows):
                stored = rows[start:start + chunk_rows]
                yield start, buffer[:len(stored)].copy_(stored)
    else:
        pool = torch.as_tensor(pool)
        for start in range(0, n, chunk_rows):
            stored = pool[start:start + chunk_rows]
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
    duplicate captions would get a neighbour that depends on SEARCH_CHUNK). One extra candidate tells which query rows
    have a tie across the cut; only those (rare: duplicate embeddings) take the exact, slower rule."""
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


def search(queries, pool, k, chunk_rows=32768, query_rows=4096, device="cpu", exclude=None, progress=None):
    """Top-k pool rows for each query: (rows int64 (m, k), scores float32 (m, k)), best first.

    queries: (m, dim) array/tensor (normalised); pool: `Index` or (n, dim) array/tensor. k is capped at the pool size.
    exclude: optional (m,) pool row per query to skip (e.g. the query's own row when searching a pool against itself).
    progress: a label to show a progress bar over the pool's rows.
    """
    queries = torch.as_tensor(np.asarray(queries, dtype=np.float32)) if not torch.is_tensor(queries) else queries
    queries = queries.to(device=device, dtype=torch.float32)
    n = pool.n if isinstance(pool, Index) else len(pool)
    dim = pool.dim if isinstance(pool, Index) else pool.shape[1]
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"queries of shape {tuple(queries.shape)} against a pool of dim {dim}")
    k = min(int(k), n - (1 if exclude is not None else 0))
    m = len(queries)
    best_scores = torch.full((m, k), -torch.inf, device=device)
    best_rows = torch.full((m, k), n, dtype=torch.int64, device=device)  # n = "no row yet", sorts last on ties
    excl = None if exclude is None else torch.as_tensor(np.asarray(exclude), dtype=torch.int64, device=device)
    # one scores buffer reused for every (query block, chunk) product, for the same reason as the chunk buffer
    scores_buffer = torch.empty(min(m, query_rows) * min(chunk_rows, n), dtype=torch.float32, device=device)
    bar = progress_bar(total=n, desc=progress, unit="row", unit_scale=True, disable=progress is None)
    for start, chunk in _pool_chunks(pool, chunk_rows, device):
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
