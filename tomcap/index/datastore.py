"""Search API over a datastore artifact: FAISS index + row-aligned texts/ids + the embeddings themselves.

Rows are datastore row numbers (0..N-1), in the order of the embedding artifact. The index is opened
memory-mapped where FAISS supports it, so several processes share one copy in the page cache.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import ArtifactRef, load_ref
from ..embed.store import ClipInfo, EmbeddingSet
from ..errors import ArtifactError, InputDataError
from .exact import exact_top_k, flat_vectors

log = logging.getLogger(__name__)

STAGE = "index"
INDEX_FILE = "index.faiss"
INFO_FILE = "index.json"
TEXTS_FILE = "texts.parquet"
NO_ROW = -1
"""Row id of an empty result slot (fewer than k admissible neighbours)."""


@dataclass
class SearchResult:
    """rows (Q, k) int64 datastore rows (NO_ROW where empty), scores (Q, k) float32 inner products
    (-inf where empty)."""

    rows: np.ndarray
    scores: np.ndarray


def read_index(path: Path):
    """faiss.read_index memory-mapped (IO_FLAG_MMAP) where the index type supports it, else loaded
    -> (index, mmapped)."""
    import faiss

    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY), True
    except RuntimeError as err:
        log.debug("index %s cannot be memory-mapped (%s); reading it into memory", path, str(err).splitlines()[0])
        return faiss.read_index(str(path)), False


def set_refine_k_factor(index, k_factor: int) -> bool:
    """Re-rank k_factor·k candidates in refine indexes (``...,Refine(...)``/``RFlat``); False if not one."""
    import faiss

    if isinstance(index, faiss.IndexRefine):
        index.k_factor = k_factor
        return True
    return False


class Datastore(ClipInfo):
    """An opened 'index' artifact. Build one with :func:`tomcap.index.run_index`."""

    def __init__(self, ref: ArtifactRef):
        self.ref = ref
        self.info = json.loads(ref.file(INFO_FILE).read_text(encoding="utf-8"))
        self.index, self.memory_mapped = read_index(ref.file(INDEX_FILE))
        if "nprobe" in self.info and self.info["nprobe"]:
            import faiss

            faiss.extract_index_ivf(self.index).nprobe = int(self.info["nprobe"])
        if self.info.get("refine_k_factor"):
            set_refine_k_factor(self.index, int(self.info["refine_k_factor"]))
        self._flat = flat_vectors(self.index)
        self.meta = pl.read_parquet(ref.file(TEXTS_FILE))
        self._emb = EmbeddingSet(ref=ref, info=self.info, ids=self.meta.select("caption_id"),
                                 shards=[np.load(ref.file(s), mmap_mode="r") for s in self.info["shards"]])
        self._image_rows: dict[str, np.ndarray] | None = None
        self._caption_rows: dict[str, int] | None = None

    @classmethod
    def open(cls, ref_or_path: ArtifactRef | Path | str) -> "Datastore":
        ref = ref_or_path if isinstance(ref_or_path, ArtifactRef) else load_ref(Path(ref_or_path))
        if ref.stage != STAGE:
            raise ArtifactError(f"is a '{ref.stage}' artifact, not a datastore", path=ref.dir,
                                fix="pass the folder of an 'index' artifact (built by `tomcap index`)")
        return cls(ref)

    def __len__(self) -> int:
        return self.meta.height

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputDataError(f"queries have shape {tuple(np.shape(queries))}, "
                                 f"the datastore holds dim-{self.dim} embeddings",
                                 path=self.ref.dir,
                                 fix="embed queries with the CLIP model the datastore was built with "
                                 f"({self.model_fingerprint})")
        return q

    def search(self, queries: np.ndarray, k: int, exclude_rows: list[np.ndarray] | None = None) -> SearchResult:
        """Top-k rows by inner product for queries (Q, D); ``exclude_rows[i]`` rows are never returned for query i.

        A flat inner-product index is searched exactly by :func:`tomcap.index.exact.exact_top_k` (excluded rows
        masked); any other index over-fetches k + max |exclude_i| neighbours and filters, so an excluded row
        never shows up.
        """
        q = self._check_queries(queries)
        if exclude_rows is not None and len(exclude_rows) != len(q):
            raise InputDataError(f"{len(exclude_rows)} exclusion lists for {len(q)} queries",
                                 fix="pass one array of rows to exclude per query (possibly empty)")
        if self._flat is not None:
            scores, rows = exact_top_k(self._flat, q, k, NO_ROW, exclude_rows)
            return SearchResult(rows=rows, scores=scores)
        extra = max((len(e) for e in exclude_rows), default=0) if exclude_rows is not None else 0
        fetch = min(len(self), k + extra)
        scores, rows = self.index.search(q, fetch)
        out_r = np.full((len(q), k), NO_ROW, np.int64)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        for i in range(len(q)):
            keep = rows[i] != NO_ROW
            if exclude_rows is not None and len(exclude_rows[i]):
                keep &= ~np.isin(rows[i], exclude_rows[i])
            r, s = rows[i][keep][:k], scores[i][keep][:k]
            out_r[i, :len(r)], out_s[i, :len(s)] = r, s
        return SearchResult(rows=out_r, scores=out_s)

    def rows_for_caption_ids(self, caption_ids) -> np.ndarray:
        """Datastore row of each caption id (NO_ROW if absent) -> (len,) int64."""
        if self._caption_rows is None:
            self._caption_rows = {c: i for i, c in enumerate(self.meta["caption_id"].to_list())}
        return np.array([self._caption_rows.get(c, NO_ROW) for c in caption_ids], np.int64)

    def rows_for_image_ids(self, image_ids) -> list[np.ndarray]:
        """Rows of every caption of each image id (empty for None/unknown ids): exclusion sets for training."""
        if self._image_rows is None:
            g = (self.meta.with_row_index("_row").filter(pl.col("image_id").is_not_null())
                 .group_by("image_id").agg(pl.col("_row")))
            self._image_rows = {i: np.asarray(r, np.int64) for i, r in g.iter_rows()}
        empty = np.zeros(0, np.int64)
        return [self._image_rows.get(i, empty) if i is not None else empty for i in image_ids]

    def _take(self, column: str, rows):
        rows = np.asarray(rows, np.int64)
        # A gather on the Arrow column per call: a column converted to Python objects once would hold every
        # caption of the datastore as a str (GBs at millions of rows).
        flat = self.meta[column].gather(np.where(rows.ravel() == NO_ROW, 0, rows.ravel())).to_list()
        flat = [v if r != NO_ROW else None for v, r in zip(flat, rows.ravel().tolist())]
        return flat if rows.ndim <= 1 else [flat[a:a + rows.shape[-1]] for a in range(0, len(flat), rows.shape[-1])]

    def texts(self, rows) -> list:
        """Caption texts of rows (1-D -> list, 2-D -> list of lists; None for NO_ROW)."""
        return self._take("text", rows)

    def caption_ids(self, rows) -> list:
        return self._take("caption_id", rows)

    def embeddings(self, rows) -> np.ndarray:
        """Stored L2-normalised embeddings of rows (...,) -> (..., D) float32 (NO_ROW gives zeros)."""
        rows = np.asarray(rows, np.int64)
        out = self._emb.rows(np.where(rows == NO_ROW, 0, rows))
        out[rows == NO_ROW] = 0.0
        return out
