"""Index stage ('index'): embedding artifact (+ its corpus for texts) -> self-contained FAISS datastore.

The artifact holds ``index.faiss``, ``index.json`` (autofaiss-style info: key, N, dim, build time,
memory, recall@k against exact search on held-out queries, QPS), ``texts.parquet`` (caption_id,
text, image_id, row-aligned) and the embedding shards (hard links to the embedding artifact's files
where the filesystem allows), so the datastore can be swapped for one built from another corpus.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from ..corpus.stage import read_corpus
from ..embed.store import EmbeddingSet
from ..errors import ArtifactError
from .config import IndexConfig
from .datastore import INDEX_FILE, INFO_FILE, STAGE, TEXTS_FILE, set_refine_k_factor
from .select import REFINE_K_FACTOR, REFINE_K_FACTOR_MAX, IndexChoice, choose_index

log = logging.getLogger(__name__)

TIMING_FIELDS = frozenset({"build_s", "qps", "exact_qps"})
"""index info fields measured in wall-clock time: reported in the manifest, never in the artifact's files."""
SPEC = StageSpec(name=STAGE, version="1", modules=("tomcap.index",))
ADD_BATCH_ROWS = 65_536
EXACT_CHUNK_ROWS = 131_072
NPROBE_RESOLUTION = 8
"""nprobe tuning stops bisecting once the bracket is within 1/8 of the answer."""


def upstream_fingerprints(config: IndexConfig, embed: ArtifactRef, corpus: ArtifactRef) -> dict[str, str]:
    # The vectors alone do not name their CLIP: two models with one text tower (only the image tower
    # changed, as in the gap sweep) embed a corpus identically, and each needs an index whose info names it.
    return {"embed": embed.fingerprint, "clip": str(embed.manifest().info["model_fingerprint"]),
            "corpus": corpus.fingerprint}


def exact_knn(emb: EmbeddingSet, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner-product neighbours of queries (Q, D) over all rows, chunked -> (scores, rows) (Q, k)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_r = np.zeros((len(queries), 0), np.int64)
    start = 0
    for block in emb.iter_batches(EXACT_CHUNK_ROWS):
        s = queries @ block.T
        r = np.broadcast_to(np.arange(start, start + len(block)), s.shape)
        s, r = np.concatenate([best_s, s], 1), np.concatenate([best_r, r], 1)
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k] if s.shape[1] > k else np.argsort(-s, 1)
        best_s, best_r = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)
        start += len(block)
    order = np.argsort(-best_s, 1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_r, order, 1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k rows (Q, k) present in the found rows (Q, k)."""
    return float(np.mean([len(np.intersect1d(f, t)) / truth.shape[1] for f, t in zip(found, truth)]))


def build_faiss(emb: EmbeddingSet, choice: IndexChoice, train_idx: np.ndarray):
    """Train (IVF) and fill an inner-product index of ``choice.key`` with every row, in row order."""
    import faiss

    index = faiss.index_factory(emb.dim, choice.key, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(emb.rows(np.sort(train_idx)))
    for block in emb.iter_batches(ADD_BATCH_ROWS):
        index.add(block)
    set_refine_k_factor(index, REFINE_K_FACTOR)
    return index


def _timed_search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    _, rows = index.search(queries, k)
    return rows, len(queries) / max(time.perf_counter() - t0, 1e-9)


def tune_nprobe(index, queries: np.ndarray, truth: np.ndarray, start: int, target: float,
                k: int) -> tuple[int, float, float]:
    """Smallest nprobe with recall@k ≥ target (or all lists): double from ``start``, then bisect to within
    1/NPROBE_RESOLUTION; sets it on the index -> (nprobe, recall, qps). QPS is re-timed at the final nprobe.

    A refine index whose target is out of reach even with all lists scanned is limited by its coarse
    codes' ranking, not by the lists: its ``k_factor`` doubles (up to REFINE_K_FACTOR_MAX) and nprobe is
    tuned again.
    """
    import faiss

    ivf = faiss.extract_index_ivf(index)

    def recall_and_qps(nprobe: int) -> tuple[float, float]:
        ivf.nprobe = nprobe
        rows, qps = _timed_search(index, queries, k)
        return recall_at_k(rows, truth), qps

    while True:
        failing, nprobe = 0, min(start, ivf.nlist)
        while recall_and_qps(nprobe)[0] < target and nprobe < ivf.nlist:
            failing, nprobe = nprobe, min(ivf.nlist, nprobe * 2)
        while failing and nprobe - failing > max(1, nprobe // NPROBE_RESOLUTION):
            mid = (failing + nprobe) // 2
            if recall_and_qps(mid)[0] >= target:
                nprobe = mid
            else:
                failing = mid
        recall, qps = recall_and_qps(nprobe)
        refine = isinstance(index, faiss.IndexRefine)
        if recall >= target or not refine or index.k_factor >= REFINE_K_FACTOR_MAX:
            return nprobe, recall, qps
        log.info("recall@%d %.3f < %.3f with all lists: re-ranking %d candidates per neighbour",
                 k, recall, target, 2 * index.k_factor)
        index.k_factor = 2 * index.k_factor


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _texts_frame(emb: EmbeddingSet, corpus: ArtifactRef) -> pl.DataFrame:
    texts = read_corpus(corpus).select("caption_id", "text")
    df = emb.ids.select("caption_id", "image_id").join(texts, on="caption_id", how="left", maintain_order="left")
    missing = df["text"].null_count()
    if missing:
        raise ArtifactError(f"{missing} embedded caption ids are not in the corpus artifact", path=corpus.dir,
                            fix="pass the corpus artifact the embeddings were built from")
    return df.select("caption_id", "text", "image_id")


def run_index(config: IndexConfig, data_dir: Path | str, embed: ArtifactRef, corpus: ArtifactRef, *,
              force: bool = False) -> ArtifactRef:
    """Build (or reuse) the datastore of an embedding artifact; texts come from its corpus artifact."""
    upstream = upstream_fingerprints(config, embed, corpus)

    def build(tmp: Path) -> BuildOutput:
        import faiss

        if config.threads:
            faiss.omp_set_num_threads(config.threads)
        emb = EmbeddingSet.open(embed)
        if emb.ref.stage != "embed":
            raise ArtifactError(f"is a '{emb.ref.stage}' artifact", path=embed.dir, fix="pass a text 'embed' artifact")
        n, dim = len(emb), emb.dim
        texts = _texts_frame(emb, corpus)
        auto = choose_index(n, dim, int(config.memory_budget_gb * 2**30))
        choice = auto if config.index_key == "auto" else IndexChoice(key=config.index_key, nprobe=auto.nprobe or 1,
                                                                     train_rows=min(n, auto.train_rows or n))
        rng = np.random.default_rng(config.seed)
        perm = rng.permutation(n)
        n_q = min(config.eval_queries, max(1, n // 10))
        q_idx, rest = perm[:n_q], perm[n_q:]
        train_idx = rest[:choice.train_rows] if len(rest) else perm
        t0 = time.perf_counter()
        try:
            index = build_faiss(emb, choice, train_idx)
        except RuntimeError as err:
            raise ArtifactError(f"faiss cannot build '{choice.key}' ({str(err).splitlines()[0]})",
                                fix="set index.index_key to 'auto' or a valid faiss factory string") from None
        build_s = time.perf_counter() - t0
        k = min(config.eval_k, n)
        queries = emb.rows(q_idx)
        t0 = time.perf_counter()
        _, truth = exact_knn(emb, queries, k)
        flat_qps = n_q / max(time.perf_counter() - t0, 1e-9)
        nprobe = None
        is_ivf = "IVF" in choice.key
        if is_ivf and config.nprobe is None:
            nprobe, recall, qps = tune_nprobe(index, queries, truth, choice.nprobe, config.target_recall, k)
        else:
            if is_ivf:
                nprobe = config.nprobe
                faiss.extract_index_ivf(index).nprobe = nprobe
            rows, qps = _timed_search(index, queries, k)
            recall = recall_at_k(rows, truth)
        faiss.write_index(index, str(tmp / INDEX_FILE))
        for s in emb.info["shards"]:
            _link_or_copy(emb.ref.file(s), tmp / s)
        texts.write_parquet(tmp / TEXTS_FILE)
        info = {"index_key": choice.key, "auto_choice": auto.key, "nprobe": nprobe, "n": n, "dim": dim,
                "metric": "inner_product",
                "refine_k_factor": int(index.k_factor) if isinstance(index, faiss.IndexRefine) else None,
                "build_s": round(build_s, 3), "train_rows": int(len(train_idx)) if is_ivf else 0,
                "index_bytes": (tmp / INDEX_FILE).stat().st_size, "est_bytes": auto.est_bytes,
                "eval_queries": int(n_q), "k": k, f"recall@{k}": round(recall, 4), "qps": round(qps, 1),
                "exact_qps": round(flat_qps, 1), "model_fingerprint": emb.model_fingerprint,
                "embed_key": embed.key, "shards": list(emb.info["shards"]), "dtype": emb.info["dtype"]}
        # Timings stay out of the file (they are in the manifest's info): the artifact's content, and so
        # the cache keys of everything trained on it, must not change when an identical index is rebuilt.
        stable = {k: v for k, v in info.items() if k not in TIMING_FIELDS}
        (tmp / INFO_FILE).write_text(json.dumps(stable, indent=1, sort_keys=True), encoding="utf-8")
        log.info("index %s: N=%d recall@%d=%.3f qps=%.0f (exact %.0f)", choice.key, n, k, recall, qps, flat_qps)
        return BuildOutput(rows={"rows": n}, info=info)

    return ArtifactStore(data_dir).build(SPEC, config, upstream, build, force=force)
