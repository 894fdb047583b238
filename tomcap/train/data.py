"""Training batches of text-only TOMCap: gap correction, noise, retrieval with self-exclusion, prompts.

Every batch is a pure function of (seed, step, micro-batch): sample order comes from a seeded
permutation per epoch and noise/dropout from a generator seeded by the micro-batch index, so a
resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import ConfigError, InputDataError
from ..model.adaptor import TomcapAdaptor
from ..model.entities import caption_hints as entity_caption_hints
from .config import TrainConfig
from .tokens import Batch, PromptTokens, pad_examples

log = logging.getLogger(__name__)

NO_GROUP = -1
"""Group id of captions without an image id (they exclude only themselves)."""
_EPS = 1e-12

SearchFn = Callable[[np.ndarray, int, list[np.ndarray]], np.ndarray]
"""``search(queries (Q, D) float32, k, exclude_rows per query) -> datastore rows (Q, k) int64``."""
CorrectFn = Callable[[np.ndarray], np.ndarray]
"""Gap correction of text embeddings (N, D) -> (N, D)."""


class RetrievalSource(Protocol):
    """What training needs from a datastore (see :class:`ArrayRetrieval` and the index glue)."""

    dim: int

    def search(self, queries: np.ndarray, k: int, exclude_rows: list[np.ndarray]) -> np.ndarray: ...

    def embeddings(self, rows: np.ndarray) -> np.ndarray: ...

    def texts(self, rows: np.ndarray) -> list[str]: ...


@dataclass
class ArrayRetrieval:
    """Exact inner-product retrieval over an in-memory matrix (tests, small stores)."""

    matrix: np.ndarray  # (M, D) float32, L2-normalised
    captions: Sequence[str]

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def search(self, queries: np.ndarray, k: int, exclude_rows: list[np.ndarray]) -> np.ndarray:
        scores = queries.astype(np.float32) @ self.matrix.T
        for i, ex in enumerate(exclude_rows):
            scores[i, ex] = -np.inf
        if k < scores.shape[1]:
            # Top-k by partition, then an exact (stable) sort of those k only: O(M) per query.
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
            return np.take_along_axis(part, order, 1).astype(np.int64)
        return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)

    def embeddings(self, rows: np.ndarray) -> np.ndarray:
        return self.matrix[rows]

    def texts(self, rows: np.ndarray) -> list[str]:
        return [self.captions[int(r)] for r in np.asarray(rows).ravel()]


class Exclusions(Sequence):
    """Datastore rows each query caption must not retrieve (itself and every caption of its image),
    kept as group codes and looked up per batch: a list of N arrays costs ~100 bytes of overhead per
    caption before any row (hundreds of MB at CC3M size), this costs 3 int64s per caption.

    ``exclusions[i]`` is query i's sorted rows, as :func:`exclusion_rows` returns them."""

    def __init__(self, store_groups: np.ndarray, query_groups: np.ndarray, query_store_rows: np.ndarray,
                 _sorted: tuple[np.ndarray, np.ndarray] | None = None):
        if _sorted is None:
            order = np.argsort(store_groups, kind="stable")
            _sorted = (order, np.asarray(store_groups)[order])
        self._order, self._groups = _sorted
        self.query_groups = np.asarray(query_groups, np.int64)
        self.own = np.asarray(query_store_rows, np.int64)

    def __len__(self) -> int:
        return len(self.query_groups)

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise TypeError("index Exclusions with one int; use subset() for several rows")
        g, own = int(self.query_groups[i]), int(self.own[i])
        rows = np.empty(0, dtype=np.int64)
        if g != NO_GROUP:
            lo, hi = np.searchsorted(self._groups, [g, g + 1])
            rows = self._order[lo:hi].astype(np.int64)
        return np.union1d(rows, [own]).astype(np.int64) if own >= 0 else rows

    def subset(self, idx: np.ndarray) -> "Exclusions":
        return Exclusions(None, self.query_groups[idx], self.own[idx], (self._order, self._groups))

    def sizes(self) -> np.ndarray:
        """Rows excluded per query (N,), without building the lists."""
        counts = np.zeros(len(self), np.int64)
        has = self.query_groups != NO_GROUP
        lo = np.searchsorted(self._groups, self.query_groups[has])
        counts[has] = np.searchsorted(self._groups, self.query_groups[has] + 1) - lo
        # the own row adds one unless it is already a row of the caption's group
        own_in_group = np.zeros(len(self), bool)
        mine = self.own >= 0
        if mine.any() and len(self._groups):
            row_group = np.empty(len(self._order), np.int64)
            row_group[self._order] = self._groups
            own_in_group[mine] = row_group[self.own[mine]] == self.query_groups[mine]
        return counts + (mine & ~own_in_group)

    @classmethod
    def none(cls, n: int) -> "Exclusions":
        return cls(np.empty(0, np.int64), np.full(n, NO_GROUP, np.int64), np.full(n, -1, np.int64))


class ShardRows:
    """A row-addressable (N, D) float32 view of stored embeddings (``source.rows(idx)``, e.g. an
    :class:`tomcap.embed.store.EmbeddingSet` over memory-mapped shards) through a row map: rows are
    read and cast per batch, so training never holds the corpus as a float32 matrix (6.7 GB at CC3M)."""

    def __init__(self, source: Any, rows: np.ndarray):
        self.source, self.rows = source, np.asarray(rows, np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), int(self.source.dim))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> np.ndarray:
        return self.source.rows(self.rows[idx])

    def take(self, idx: np.ndarray) -> "ShardRows":
        return ShardRows(self.source, self.rows[idx])


def _take(values: Any, idx: np.ndarray) -> Any:
    """Rows idx of an array, a ShardRows view, a polars Series or a list."""
    if isinstance(values, ShardRows):
        return values.take(idx)
    if isinstance(values, Exclusions):
        return values.subset(idx)
    if hasattr(values, "gather"):  # polars Series: Arrow strings, not N Python objects
        return values.gather(idx)
    if isinstance(values, np.ndarray):
        return values[idx]
    return [values[i] for i in idx]


@dataclass
class TrainData:
    """Captions to train on, row-aligned: ``texts`` (list or polars Series), ``embeddings`` (an array or a
    :class:`ShardRows` view), ``exclude[i]`` the datastore rows caption i must never retrieve (a list of
    arrays or :class:`Exclusions`)."""

    texts: Sequence[str]
    embeddings: Any  # (N, D): np.ndarray or ShardRows, L2-normalised text embeddings
    exclude: Sequence[np.ndarray]
    image_embeddings: Any = None  # (N, D) paired image embeddings (oracle only)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.embeddings.shape[0] != n or len(self.exclude) != n:
            raise InputDataError(f"training rows disagree: {n} texts, {self.embeddings.shape[0]} embeddings, "
                                 f"{len(self.exclude)} exclusion lists",
                                 fix="build TrainData from one corpus/embedding pair")
        if self.image_embeddings is not None and tuple(self.image_embeddings.shape) != tuple(self.embeddings.shape):
            raise InputDataError(f"paired image embeddings {self.image_embeddings.shape} do not match text embeddings "
                                 f"{self.embeddings.shape}", fix="embed one image per caption with the same CLIP model")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> "TrainData":
        img = None if self.image_embeddings is None else _take(self.image_embeddings, idx)
        return TrainData(_take(self.texts, idx), _take(self.embeddings, idx), _take(self.exclude, idx), img)


def exclusion_rows(store_groups: np.ndarray, query_groups: np.ndarray,
                   query_store_rows: np.ndarray) -> list[np.ndarray]:
    """Datastore rows each query caption must not retrieve: itself and every caption of its image.

    store_groups (M,) int64 image-group id per datastore row (NO_GROUP if none); query_groups (N,)
    likewise for the query captions; query_store_rows (N,) each query's own datastore row or -1.
    (Lists; training keeps the compact :class:`Exclusions` and looks rows up per batch.)"""
    ex = Exclusions(store_groups, query_groups, query_store_rows)
    return [ex[i] for i in range(len(ex))]


def group_codes(image_ids: Sequence[str | None], vocabulary: dict[str, int] | None = None) -> np.ndarray:
    """Integer group ids for image id strings (None -> NO_GROUP); pass one shared ``vocabulary``
    so that store and query captions get the same codes."""
    vocab = {} if vocabulary is None else vocabulary
    return np.array([NO_GROUP if i is None else vocab.setdefault(i, len(vocab)) for i in image_ids], dtype=np.int64)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def add_noise(x: np.ndarray, std: np.ndarray, scale: float, rng: np.random.Generator, renormalize: bool) -> np.ndarray:
    """x + scale * std * N(0, 1) per dimension (x (N, D), std (D,) or scalar), then L2-normalised."""
    out = x + (scale * np.asarray(std, dtype=np.float32)) * rng.standard_normal(x.shape, dtype=np.float32)
    return _normalize(out).astype(np.float32) if renormalize else out.astype(np.float32)


class BatchBuilder:
    """Turns caption rows into model inputs with TOMCap's text-only recipe.

    ``noise_std``: per-dim std (D,) of the modality residual (from the gap stats) or None to use
    ``cfg.noise_std``; ``correct``: the gap correction (``tomcap.gapmath.correct_text`` bound to
    the stats), required when ``cfg.gap_correction`` and ``cfg.query == 'text'``."""

    def __init__(self, model: TomcapAdaptor, cfg: TrainConfig, data: TrainData, retrieval: RetrievalSource | None,
                 correct: CorrectFn | None = None, noise_std: np.ndarray | None = None):
        dim = data.embeddings.shape[1]
        if model.config.clip_dim != dim:
            raise ConfigError(f"adaptor clip_dim {model.config.clip_dim} != embedding dim {dim}",
                              fix="leave model.clip_dim null so it follows the embeddings")
        if cfg.uses_retrieval:
            if retrieval is None:
                raise ConfigError("retrieval is on (model.k > 0) but no datastore was given",
                                  fix="pass an index artifact or set train.model.k: 0")
            if retrieval.dim != dim:
                raise InputDataError(f"the datastore has dim {retrieval.dim}, the caption embeddings have dim {dim}",
                                     fix="build the index from embeddings of the same CLIP model")
        if cfg.query == "image" and data.image_embeddings is None:
            raise ConfigError("train.query is 'image' (paired oracle) but no image embeddings were given",
                              fix="pass paired image embeddings or set train.query: text")
        if cfg.gap_correction and cfg.query == "text" and correct is None:
            raise ConfigError("gap correction is on but no gap statistics were given",
                              fix="pass a gap artifact or set train.gap_correction: false")
        if noise_std is not None and np.shape(noise_std) not in ((), (dim,)):
            raise InputDataError(f"noise std has shape {np.shape(noise_std)}, embeddings have dim {dim}",
                                 fix="use gap statistics computed with the same CLIP model")
        self.model, self.cfg, self.data, self.retrieval, self.correct = model, cfg, data, retrieval, correct
        self.entity_labels: np.ndarray | None = None
        """(N, E) entities each row's caption names, when training batches take hints from captions."""
        self.noise_std = np.float32(cfg.noise_std) if noise_std is None else np.asarray(noise_std, np.float32)
        self.tokens: PromptTokens | None = None
        if len(data):
            tokens = PromptTokens(model, data.texts)
            if tokens.verified(data.texts):
                self.tokens = tokens
            else:  # a tokenizer whose pieces do not concatenate: tokenise each example per step
                log.warning("cached prompt tokens differ from the tokenizer's; tokenising every example per step")

    def indices(self, micro: int) -> np.ndarray:
        """Rows of global micro-batch ``micro``: consecutive slices of a seeded per-epoch permutation."""
        n, b = len(self.data), self.cfg.batch_size
        start = micro * b
        out = []
        while len(out) < b:
            epoch, pos = divmod(start + len(out), n)
            perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(n)
            out.extend(perm[pos: pos + b - len(out)].tolist())
        return np.array(out, dtype=np.int64)

    def query_embeddings(self, idx: np.ndarray) -> np.ndarray:
        """Clean (pre-noise) query: corrected text embedding, raw text, or paired image embedding."""
        if self.cfg.query == "image":
            return self.data.image_embeddings[idx].astype(np.float32)
        x = self.data.embeddings[idx].astype(np.float32)
        if self.cfg.gap_correction:
            x = np.asarray(self.correct(x), dtype=np.float32)
        return x

    def build(self, idx: np.ndarray, rng: np.random.Generator, cond_dropout: float | None = None,
              caption_hints: bool = True) -> Batch:
        """``caption_hints``: take entity hints from ``entity_labels`` when set (training batches; validation
        batches get the head's predictions, as captioning does)."""
        cfg, k = self.cfg, self.model.config.k
        base = self.query_embeddings(idx)
        if cfg.noise:
            cross = add_noise(base, self.noise_std, cfg.noise_scale_cross, rng, cfg.renormalize)
            query = add_noise(base, self.noise_std, cfg.noise_scale_query, rng, cfg.renormalize)
        else:
            cross = query = base
        p = cfg.cond_dropout if cond_dropout is None else cond_dropout
        keep = rng.random(len(idx)) >= p
        retrieved_texts: list[list[str] | None] = [None] * len(idx)
        cond = cross[:, None, :]
        if cfg.uses_retrieval:
            rows = self.retrieval.search(query, k, [self.data.exclude[i] for i in idx])
            if cfg.retrieval_cross:
                cond = np.concatenate([cond, self.retrieval.embeddings(rows.ravel()).reshape(len(idx), k, -1)], axis=1)
            if cfg.retrieval_prompt:
                texts = self.retrieval.texts(rows.ravel())
                retrieved_texts = [texts[i * k:(i + 1) * k] for i in range(len(idx))]
        given = None
        if caption_hints and self.entity_labels is not None:
            ents = self.model.config.entities
            given = entity_caption_hints(self.entity_labels[idx], ents.max_entities, ents.hint_dropout, rng)
        hints, entity_states = self.model.entity_hints(query, given)
        if entity_states is not None:  # after the query and the retrieved captions, as captioning places them
            cond = np.concatenate([cond, entity_states], axis=1)
        if hints is not None:
            retrieved_texts = [[h, *(r or [])] for h, r in zip(hints, retrieved_texts)]
        if self.tokens is not None:
            examples = [self.tokens.example(i, r if kp else None)
                        for i, r, kp in zip(idx.tolist(), retrieved_texts, keep.tolist())]
        else:
            examples = [self.model.example_ids(r if kp else None, self.data.texts[int(i)])
                        for i, r, kp in zip(idx.tolist(), retrieved_texts, keep.tolist())]
        ids, mask, labels = pad_examples(examples, self.model.pad_id)
        return Batch(ids, mask, labels, torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)),
                     torch.from_numpy(keep))

    def micro_batch(self, micro: int) -> Batch:
        """The training micro-batch number ``micro`` (a pure function of seed and ``micro``)."""
        rng = np.random.default_rng([self.cfg.seed, 1, micro])
        return self.build(self.indices(micro), rng)

    def fixed_batches(self, seed_tag: int) -> list[Batch]:
        """All rows in order, conditioned (no dropout), with fixed noise: validation batches."""
        out, b = [], self.cfg.batch_size
        for j, start in enumerate(range(0, len(self.data), b)):
            idx = np.arange(start, min(start + b, len(self.data)))
            out.append(self.build(idx, np.random.default_rng([self.cfg.seed, seed_tag, j]), cond_dropout=0.0,
                                  caption_hints=False))
        return out


def describe(data: TrainData) -> dict[str, Any]:
    ex = data.exclude
    sizes = ex.sizes() if isinstance(ex, Exclusions) else [len(e) for e in ex]
    return {"rows": len(data), "dim": int(data.embeddings.shape[1]),
            "mean_excluded": float(np.mean(sizes)) if len(data) else 0.0}
