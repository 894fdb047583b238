"""Exact top-k over a flat inner-product index's own vectors: one BLAS product per block of rows, exclusions
masked before the top-k, so there is no over-fetch.

Why: training searches every batch (64 noised queries, each excluding its own image's ~5 captions), and on one
core FAISS's flat search was most of a batch's build: 35-45 ms over the world's 34k captions, 3.7-5.2x the time
of NumPy's product + top-k (``benchmarks/flat_search.py``). The result is the same exact search, best first. Only
plain flat inner-product indexes take this path; every other index goes through FAISS.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROW_BLOCK = 65_536
"""Datastore rows per product: bounds the (queries x block) score matrix (64 queries: 16 MiB)."""


def flat_vectors(index) -> np.ndarray | None:
    """(N, D) view (no copy) of a flat inner-product index's vectors; None for any other index. The view points into
    ``index``'s memory: keep the index alive as long as the view (``Datastore`` holds both)."""
    import faiss

    if type(index) not in (faiss.IndexFlat, faiss.IndexFlatIP) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    flat = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)
    return np.asarray(flat).reshape(index.ntotal, index.d)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, no_row: int,
                exclude_rows: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores (Q, k) float32, rows (Q, k) int64) of the k largest inner products per query, best first, rows in
    ``exclude_rows[i]`` never returned for query i; ``no_row`` / -inf where fewer than k rows are left."""
    q = np.ascontiguousarray(queries, np.float32)
    n_q = len(q)
    if k <= 0:
        return np.zeros((n_q, 0), np.float32), np.zeros((n_q, 0), np.int64)
    best_s = np.full((n_q, 0), -np.inf, np.float32)
    best_r = np.zeros((n_q, 0), np.int64)
    ex_q = ex_r = None
    if exclude_rows is not None:
        lengths = [len(e) for e in exclude_rows]
        ex_q = np.repeat(np.arange(n_q), lengths)
        ex_r = np.concatenate([np.asarray(e, np.int64) for e in exclude_rows] or [np.zeros(0, np.int64)])
    for start in range(0, len(vectors), ROW_BLOCK):
        block = vectors[start:start + ROW_BLOCK]
        scores = q @ block.T
        if ex_r is not None:
            inside = (ex_r >= start) & (ex_r < start + len(block))
            scores[ex_q[inside], ex_r[inside] - start] = -np.inf
        take, width = min(k, scores.shape[1]), scores.shape[1]
        if take == 1:  # the common k: argmax is ~30x faster than a partition
            part = scores.argmax(1)[:, None]
        elif take < width:
            part = np.argpartition(scores, width - take, axis=1)[:, width - take:]
        else:
            part = np.broadcast_to(np.arange(width), scores.shape)
        best_s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        best_r = np.concatenate([best_r, part + start], axis=1)
        order = np.lexsort((best_r, -best_s), axis=1)[:, :k]  # by score, then by lower row
        best_s, best_r = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_r, order, 1)
    out_s = np.full((n_q, k), -np.inf, np.float32)
    out_r = np.full((n_q, k), no_row, np.int64)
    found = best_s.shape[1]
    out_s[:, :found], out_r[:, :found] = best_s, best_r
    out_r[~np.isfinite(out_s)] = no_row
    return out_s, out_r
