"""Datastore at real scale (issue 17): >= 4M synthetic CLIP-like vectors through tomcap's index build, measured.

Usage: nice -n 10 python benchmarks/index_scale.py OUT.json [--n 4000000] [--dim 512] [--queries 500]
       [--memory-gb 8] [--root DIR] [--threads 2]

The vectors (L2-normalised low-rank + noise, as in benchmarks/index.py) are written in chunks as
float16 ``.npy`` shards, the format of the embedding artifacts, and opened memory-mapped: nothing
holds all N vectors in RAM as float32. The index is what the pipeline would build: the automatic
choice of tomcap.index.select for (N, dim, budget), trained and filled by tomcap.index.stage.build_faiss
(streaming batches from the shards), nprobe tuned to the target recall. Ground truth is an exact
chunked scan of the same shards. Reported: index key, build time (train / add), recall@10, QPS
(all threads and one thread), index file size, peak RSS of this process.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 200_000
SHARD_ROWS = 1_000_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_shards(root: Path, n: int, dim: int, rank: int, noise: float, seed: int, queries: int
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """Memory-mapped float16 shards of n vectors + held-out float32 queries of the same distribution."""
    rng = np.random.default_rng(seed)
    spectrum = np.arange(1, rank + 1, dtype=np.float32) ** -1.0
    basis = spectrum[:, None] * rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(np.sum(spectrum ** 2))

    def draw(m: int) -> np.ndarray:
        x = rng.standard_normal((m, rank)).astype(np.float32) @ basis
        x += noise * rng.standard_normal((m, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    meta = {"n": n, "dim": dim, "rank": rank, "noise": noise, "seed": seed, "queries": queries}
    marker = root / "shards.json"
    if marker.exists() and json.loads(marker.read_text()) == meta:  # a kept --root: same vectors, reuse them
        names = sorted(root.glob("emb-*.npy"))
        return [np.load(f, mmap_mode="r") for f in names], np.load(root / "queries.npy")
    shards = []
    for i, a in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - a)
        mm = np.lib.format.open_memmap(root / f"emb-{i:05d}.npy", mode="w+", dtype=np.float16, shape=(rows, dim))
        for b in range(0, rows, CHUNK):
            m = min(CHUNK, rows - b)
            mm[b:b + m] = draw(m)
        mm.flush()
        del mm
        shards.append(np.load(root / f"emb-{i:05d}.npy", mmap_mode="r"))
    xq = draw(queries)
    np.save(root / "queries.npy", xq)
    marker.write_text(json.dumps(meta))
    return shards, xq


def _set_kmeans_iters(niter: int) -> None:
    """faiss.index_factory builds IVF indexes whose ClusteringParameters default to 25 iterations; the
    benchmark patches the factory so that tomcap's build_faiss trains with ``niter`` instead."""
    import faiss

    factory = faiss.index_factory

    def patched(*a, **kw):
        index = factory(*a, **kw)
        try:
            faiss.extract_index_ivf(index).cp.niter = niter
        except RuntimeError:
            pass
        return index

    faiss.index_factory = patched


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=4_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--memory-gb", type=float, default=8.0, help="index.memory_budget_gb (the pipeline default)")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--index-key", default=None, help="faiss factory key instead of the automatic choice, e.g. "
                    "'IVF8192_HNSW32,PQ128x4fs,Refine(SQfp16)' (HNSW coarse quantizer: cheap assignment at add time)")
    ap.add_argument("--nlist", type=int, default=None, help="lists of --index-key (training rows, start nprobe)")
    ap.add_argument("--kmeans-iters", type=int, default=None, help="k-means iterations of the IVF training (faiss: 25)")
    ap.add_argument("--root", type=Path, default=None, help="where the float16 shards go (default: a temp folder); "
                    "a kept root with the same --n/--dim/--rank/--noise/--seed/--queries is reused")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import faiss
    import polars as pl

    from tomcap.embed.store import EmbeddingSet
    from tomcap.index.select import choose_index
    from tomcap.index.stage import build_faiss, exact_knn, recall_at_k, tune_nprobe

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    root = args.root or Path(tempfile.mkdtemp(prefix="tomcap-index-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    res: dict = {"kmeans_iters": args.kmeans_iters or 25, "n": args.n, "dim": args.dim, "queries": args.queries,
                 "threads": faiss.omp_get_max_threads(),
                 "storage": "float16 .npy shards, memory-mapped"}
    try:
        t0 = time.perf_counter()
        shards, xq = write_shards(root, args.n, args.dim, args.rank, args.noise, args.seed, args.queries)
        res["write_shards_s"] = round(time.perf_counter() - t0, 1)
        res["shards_gb"] = round(sum(p.stat().st_size for p in root.glob("emb-*.npy")) / 2**30, 2)
        res["rss_after_write_mb"] = round(_peak_rss_mb())
        print(json.dumps(res), flush=True)
        emb = EmbeddingSet(ref=None, info={"dim": args.dim}, ids=pl.DataFrame(), shards=shards)

        t0 = time.perf_counter()
        _, truth = exact_knn(emb, xq, args.k)
        exact_s = time.perf_counter() - t0
        np.save(root / "truth.npy", truth)
        res.update(exact_scan_s=round(exact_s, 1), exact_qps=round(args.queries / exact_s, 2))
        print(json.dumps(res), flush=True)

        choice = choose_index(args.n, args.dim, int(args.memory_gb * 2**30))
        res["auto_choice"] = choice.key
        if args.index_key:
            from tomcap.index.select import NPROBE_FRACTION, NPROBE_MIN, TRAIN_POINTS_PER_LIST, IndexChoice

            nlist = args.nlist or choice.nlist
            choice = IndexChoice(key=args.index_key, nlist=nlist, nprobe=max(NPROBE_MIN, nlist // NPROBE_FRACTION),
                                 train_rows=min(args.n, nlist * TRAIN_POINTS_PER_LIST), est_bytes=choice.est_bytes)
        if args.kmeans_iters:
            _set_kmeans_iters(args.kmeans_iters)
        res.update(index_key=choice.key, nlist=choice.nlist, train_rows=choice.train_rows,
                   est_index_gb=round(choice.est_bytes / 2**30, 2))
        train_idx = np.random.default_rng(args.seed).permutation(args.n)[: choice.train_rows or args.n]
        t0 = time.perf_counter()
        index = build_faiss(emb, choice, train_idx)
        res["build_s"] = round(time.perf_counter() - t0, 1)
        res["rss_after_build_mb"] = round(_peak_rss_mb())
        print(json.dumps(res), flush=True)

        if choice.is_ivf:
            t0 = time.perf_counter()
            nprobe, recall, qps = tune_nprobe(index, xq, truth, choice.nprobe, args.target_recall, args.k)
            res["tune_s"] = round(time.perf_counter() - t0, 1)
            res.update(nprobe=nprobe, refine_k_factor=getattr(index, "k_factor", None))
        t0 = time.perf_counter()
        _, rows = index.search(xq, args.k)
        qps = args.queries / (time.perf_counter() - t0)
        res.update({f"recall@{args.k}": round(recall_at_k(rows, truth), 4), "qps": round(qps, 1)})
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        t0 = time.perf_counter()
        index.search(xq, args.k)
        res["qps_1_thread"] = round(args.queries / (time.perf_counter() - t0), 1)
        faiss.omp_set_num_threads(threads)
        res["speedup_vs_exact"] = round(res["qps"] / res["exact_qps"], 1)
        faiss.write_index(index, str(root / "index.faiss"))
        res["index_file_gb"] = round((root / "index.faiss").stat().st_size / 2**30, 2)
        res["peak_rss_mb"] = round(_peak_rss_mb())
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
