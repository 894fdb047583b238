"""Embedding artifacts on disk: numbered ``.npy`` shards plus a row-aligned ids Parquet.

Shards are plain ``.npy`` files so they open memory-mapped (``np.load(mmap_mode="r")``); the ids
file lists one id per embedding row in the same order (clip-retrieval's writer layout).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import ArtifactRef, load_ref
from ..errors import ArtifactError

SHARD_PATTERN = "emb-{:05d}.npy"
IDS_FILE = {"embed": "caption_ids.parquet", "embed_shard": "caption_ids.parquet", "embed_images": "image_ids.parquet"}
ID_COLUMN = {"embed": "caption_id", "embed_shard": "caption_id", "embed_images": "image_id"}


def write_shards(emb: np.ndarray, out_dir: Path, dtype: str, shard_rows: int) -> list[str]:
    """Write emb (N, D) as dtype shards of ``shard_rows`` rows; returns file names in order."""
    names = []
    for i, a in enumerate(range(0, max(len(emb), 1), shard_rows)):
        name = SHARD_PATTERN.format(i)
        np.save(out_dir / name, np.ascontiguousarray(emb[a:a + shard_rows], dtype=dtype))
        names.append(name)
    return names


class ShardSink:
    """The shards :func:`write_shards` would write, filled in place: row-addressable memory-mapped
    ``.npy`` files of ``dtype``, so a stage holds one block of rows in RAM, never all N (a 3.3M x 512
    float32 matrix is 6.7 GB). Values are cast on assignment, as ``astype`` does: the same bytes."""

    def __init__(self, out_dir: Path, n: int, dim: int, dtype: str, shard_rows: int):
        self.out_dir, self.n, self.dim, self.dtype = Path(out_dir), n, dim, dtype
        self.starts = list(range(0, max(n, 1), shard_rows))
        self.names = [SHARD_PATTERN.format(i) for i in range(len(self.starts))]
        self.maps = [] if n == 0 else [
            np.lib.format.open_memmap(self.out_dir / name, mode="w+", dtype=dtype, shape=(min(shard_rows, n - a), dim))
            for name, a in zip(self.names, self.starts)]

    def __setitem__(self, rows: np.ndarray, values: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        for m, a in zip(self.maps, self.starts):
            sel = (rows >= a) & (rows < a + len(m))
            if sel.any():
                m[rows[sel] - a] = values[sel]

    def close(self) -> list[str]:
        """Flush and return the file names in order (an empty set gets one (0, dim) shard)."""
        if self.n == 0:
            return write_shards(np.empty((0, self.dim), np.float32), self.out_dir, self.dtype, 1)
        for m in self.maps:
            m.flush()
        self.maps = []
        return self.names


class ClipInfo:
    """What an artifact built from CLIP embeddings (an embedding set, a datastore) says of its model."""

    info: dict

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def model_fingerprint(self) -> str:
        return str(self.info["model_fingerprint"])


@dataclass
class EmbeddingSet(ClipInfo):
    """A text or image embedding artifact, opened memory-mapped."""

    ref: ArtifactRef
    info: dict
    ids: pl.DataFrame
    shards: list[np.ndarray]

    @classmethod
    def open(cls, ref_or_path: ArtifactRef | Path | str) -> "EmbeddingSet":
        ref = ref_or_path if isinstance(ref_or_path, ArtifactRef) else load_ref(Path(ref_or_path))
        if ref.stage not in IDS_FILE:
            raise ArtifactError(f"is a '{ref.stage}' artifact, not an embedding artifact", path=ref.dir,
                                fix="pass the folder of an 'embed' or 'embed_images' artifact")
        m = ref.manifest()
        shards = [np.load(ref.file(s), mmap_mode="r") for s in m.info["shards"]]
        ids = pl.read_parquet(ref.file(IDS_FILE[ref.stage]))
        return cls(ref=ref, info=dict(m.info), ids=ids, shards=shards)

    @property
    def id_column(self) -> str:
        return ID_COLUMN[self.ref.stage]

    def __len__(self) -> int:
        return self.ids.height

    def id_list(self) -> np.ndarray:
        return self.ids[self.id_column].to_numpy()

    def array(self, dtype=np.float32) -> np.ndarray:
        """All rows (N, D): the memory map itself for one shard of the stored dtype, else a copy."""
        if len(self.shards) == 1 and self.shards[0].dtype == np.dtype(dtype):
            return self.shards[0]
        if not self.shards or len(self) == 0:
            return np.zeros((0, self.dim), dtype)
        return np.concatenate([np.asarray(s, dtype) for s in self.shards])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows at global indices idx (...,) -> (..., D) float32."""
        idx = np.asarray(idx, np.int64)
        flat = idx.ravel()
        starts = np.cumsum([0] + [len(s) for s in self.shards])
        out = np.empty((flat.size, self.dim), np.float32)
        which = np.searchsorted(starts, flat, side="right") - 1
        for s in np.unique(which):
            sel = which == s
            out[sel] = self.shards[s][flat[sel] - starts[s]]
        return out.reshape(*idx.shape, self.dim)

    def iter_batches(self, batch_rows: int) -> Iterator[np.ndarray]:
        """Consecutive float32 blocks (≤ batch_rows, D) over all rows."""
        for shard in self.shards:
            for a in range(0, len(shard), batch_rows):
                yield np.asarray(shard[a:a + batch_rows], np.float32)
