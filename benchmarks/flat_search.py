"""Flat-index search as training asks it: FAISS's IndexFlatIP with over-fetch + filter vs tomcap's exact product +
top-k with exclusions masked (:mod:`tomcap.index.exact`), interleaved round by round in one process at one thread.

Usage: python benchmarks/flat_search.py [--n 34445] [--dim 128] [--queries 64] [--k 1] [--excluded 5] [--rounds 50]
Defaults are the world demo's training search (34k corpus captions, 128-d, batch 64, k = 1, ~5 captions of the
query's own image excluded). Prints ms per batch for each path, their ratio, and whether the rows agree.
Not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from tomcap.index import NO_ROW
from tomcap.index.exact import exact_top_k, flat_vectors


def faiss_filtered(index, q: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
    """What ``Datastore.search`` did for every index before: over-fetch k + max |excluded|, then filter."""
    fetch = k + max(len(e) for e in exclude)
    _, rows = index.search(q, fetch)
    out = np.full((len(q), k), NO_ROW, np.int64)
    for i in range(len(q)):
        r = rows[i][~np.isin(rows[i], exclude[i])][:k]
        out[i, :len(r)] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=34_445)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--excluded", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    threadpool_limits(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(args.dim)
    index.add(x)
    vectors = flat_vectors(index)
    times: dict[str, list[float]] = {"faiss": [], "exact": []}
    agree = 0
    for _ in range(args.rounds):
        own = rng.integers(args.n, size=args.queries)
        q = x[own] + 0.06 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        exclude = [np.unique(np.r_[i, rng.integers(args.n, size=args.excluded - 1)]) for i in own]
        t = time.perf_counter()
        a = faiss_filtered(index, q, args.k, exclude)
        times["faiss"].append(time.perf_counter() - t)
        t = time.perf_counter()
        _, b = exact_top_k(vectors, q, args.k, NO_ROW, exclude)
        times["exact"].append(time.perf_counter() - t)
        agree += int((a == b).all())
    ms = {name: round(1e3 * statistics.median(ts), 2) for name, ts in times.items()}
    print(json.dumps({**vars(args), "median_ms": ms, "ratio_faiss_over_exact": round(ms["faiss"] / ms["exact"], 2),
                      "rounds_with_equal_rows": agree}, indent=1))


if __name__ == "__main__":
    main()
