"""Datastore index: automatic choice vs exact Flat on synthetic low-rank vectors (default 1M x 512).

Usage: python benchmarks/index.py [--n 1000000] [--dim 512] [--rank 64] [--queries 1000] [--memory-gb 8]
Vectors: L2-normalised (Z S W + noise) with Z ~ N(0, I_rank) and S = diag(j^-decay), like CLIP text
embeddings that fill a low-dimensional subspace with a decaying spectrum (--decay 0: isotropic, the hardest case).
Queries are held out (drawn from the same distribution, not indexed).
The auto index is built with tomcap.index (choice, training, nprobe tuning to --target-recall).
Goal: recall@10 >= 0.95 at >= 10x the QPS of IndexFlatIP. Not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np
import polars as pl

from tomcap.embed.store import EmbeddingSet
from tomcap.index.select import choose_index
from tomcap.index.stage import build_faiss, recall_at_k, tune_nprobe

CHUNK = 100_000


def low_rank(n: int, dim: int, rank: int, noise: float, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for a in range(0, n, CHUNK):
        m = min(CHUNK, n - a)
        x = (rng.standard_normal((m, rank)).astype(np.float32) @ basis
             + noise * rng.standard_normal((m, dim)).astype(np.float32))
        out[a:a + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--decay", type=float, default=1.0, help="spectrum exponent: singular value j ~ j^-decay")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--memory-gb", type=float, default=8.0)
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    spectrum = np.arange(1, args.rank + 1, dtype=np.float32) ** -args.decay
    basis = (spectrum[:, None] * rng.standard_normal((args.rank, args.dim)).astype(np.float32)
             / np.sqrt(np.sum(spectrum ** 2)))
    xb = low_rank(args.n, args.dim, args.rank, args.noise, rng, basis)
    xq = low_rank(args.queries, args.dim, args.rank, args.noise, rng, basis)
    emb = EmbeddingSet(ref=None, info={"dim": args.dim}, ids=pl.DataFrame(), shards=[xb])

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(xb)
    t0 = time.perf_counter()
    _, truth = flat.search(xq, args.k)
    flat_qps = args.queries / (time.perf_counter() - t0)
    del flat

    choice = choose_index(args.n, args.dim, int(args.memory_gb * 2**30))
    t0 = time.perf_counter()
    index = build_faiss(emb, choice, rng.permutation(args.n)[:choice.train_rows or args.n])
    build_s = time.perf_counter() - t0
    if choice.is_ivf:
        nprobe, recall, qps = tune_nprobe(index, xq, truth, choice.nprobe, args.target_recall, args.k)
        # Re-time at the chosen nprobe (the tuning pass includes the first-touch cost of the lists).
        t0 = time.perf_counter()
        _, rows = index.search(xq, args.k)
        qps = args.queries / (time.perf_counter() - t0)
        recall = recall_at_k(rows, truth)
    else:
        nprobe = None
        t0 = time.perf_counter()
        _, rows = index.search(xq, args.k)
        qps = args.queries / (time.perf_counter() - t0)
        recall = recall_at_k(rows, truth)
    result = {"n": args.n, "dim": args.dim, "rank": args.rank, "decay": args.decay, "noise": args.noise,
              "queries": args.queries, "threads": faiss.omp_get_max_threads(),
              "index_key": choice.key, "nprobe": nprobe, "refine_k_factor": getattr(index, "k_factor", None),
              "train_rows": choice.train_rows, "build_s": round(build_s, 1),
              "index_mb": round(faiss.serialize_index(index).nbytes / 2**20, 1), f"recall@{args.k}": round(recall, 4),
              "qps": round(qps, 1), "flat_qps": round(flat_qps, 1), "speedup_vs_flat": round(qps / flat_qps, 2)}
    result["goals_met"] = {"recall>=0.95": recall >= 0.95, "qps>=10x_flat": qps >= 10 * flat_qps}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
