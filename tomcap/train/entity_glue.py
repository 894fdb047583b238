"""The train stage's part of entity hints: read the vocabulary, fit the entity head before the adaptor trains.

The head learns from what the adaptor will be conditioned on: the builder's query embeddings (gap-corrected
text, or the paired images for the oracle) with the builder's noise, so its errors at captioning time look
like the ones the adaptor saw in training.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputDataError
from ..manifest import input_sha256
from ..model.adaptor import TomcapAdaptor
from ..model.config import AdaptorConfig
from ..model.entities import EntityVocabulary, entity_prototypes, fit_count, fit_head
from .config import TrainConfig
from .data import BatchBuilder, add_noise
from .entity_cache import HeadCache, fit_key, load_head, save_head

log = logging.getLogger(__name__)

PROTOTYPE_CHUNK = 65_536
"""Rows of text embeddings read at a time for the entity prototypes."""


def vocabulary_path(config: AdaptorConfig) -> Path | None:
    ents = config.entities
    if ents is None:
        return None
    if ents.vocabulary is None:
        raise ConfigError("train.model.entities.vocabulary is not set",
                          fix='point it at a JSON file {"entity name": ["phrase", ...]} (the demo writes '
                              "world_entities.json into the world artifact)")
    if not Path(ents.vocabulary).is_file():
        raise InputDataError("entity vocabulary not found", path=ents.vocabulary,
                             fix="set train.model.entities.vocabulary to an existing JSON file")
    return Path(ents.vocabulary)


def vocabulary_fingerprint(config: AdaptorConfig) -> str | None:
    """Content hash of the vocabulary file (an upstream fingerprint of the train stage), None without entities."""
    path = vocabulary_path(config)
    return None if path is None else input_sha256(path)


def resolve_entities(config: AdaptorConfig) -> tuple[AdaptorConfig, EntityVocabulary | None]:
    """``config`` with ``entities.names`` read from the vocabulary (unchanged without entities)."""
    path = vocabulary_path(config)
    if path is None:
        return config, None
    vocab = EntityVocabulary.load(path)
    return config.model_copy(update={"entities": config.entities.model_copy(update={"names": vocab.names})}), vocab


def fit_entities(model: TomcapAdaptor, vocab: EntityVocabulary, builder: BatchBuilder, cfg: TrainConfig,
                 cache: HeadCache | None = None) -> dict[str, Any]:
    """Fit ``model.entities`` on the builder's training rows (labels from their captions); returns the info.
    With ``cache``, a head fitted before on the same inputs is loaded instead (:mod:`.entity_cache`)."""
    texts = builder.data.texts
    labels = vocab.labels(texts.to_list() if hasattr(texts, "to_list") else list(texts))
    named = labels.sum(0)
    if not named.any():
        raise InputDataError(f"no training caption names any of the {len(vocab)} vocabulary entities",
                             path=model.config.entities.vocabulary,
                             fix="list phrases that occur in the corpus captions (whole words, any case)")
    ents = model.config.entities
    if ents.train_hints == "captions":
        builder.entity_labels = labels
    key = None
    if cache is not None:
        emb = builder.data.embeddings
        key = fit_key(model.entities, _fit_settings(model, cfg, cache.code_version), labels, builder.noise_std,
                      [builder.query_embeddings, lambda rows: emb[rows]])
        info = load_head(cache.dir, key, model.entities)
        if info is not None:
            return info
    info = _fit(model, labels, builder, cfg)
    log.info("entity head: %d entities (%d named in the corpus), BCE %.4f -> %.4f", len(vocab),
             int((named > 0).sum()), info["head_losses"][0], info["head_losses"][-1])
    if key is not None:
        save_head(cache.dir, key, model.entities, info)
    return info


def _fit_settings(model: TomcapAdaptor, cfg: TrainConfig, code_version: str) -> dict[str, Any]:
    """What the fit reads from configs and code (the data it reads is hashed by ``fit_key`` itself)."""
    # the count rule only reads the fitted heads: configs that differ only in it share one fit
    ents = model.config.entities.model_dump(mode="json", exclude={"vocabulary", "count_rule"})
    return {"entities": ents, "seed": cfg.seed, "noise": cfg.noise, "noise_scale_query": cfg.noise_scale_query,
            "renormalize": cfg.renormalize, "code": code_version}


def _fit(model: TomcapAdaptor, labels: np.ndarray, builder: BatchBuilder, cfg: TrainConfig) -> dict[str, Any]:
    emb = builder.data.embeddings
    n = len(labels)
    chunks = ((a, emb[np.arange(a, min(a + PROTOTYPE_CHUNK, n))]) for a in range(0, n, PROTOTYPE_CHUNK))
    head = model.entities
    with torch.no_grad():
        head.table.copy_(torch.from_numpy(entity_prototypes(chunks, labels)))

    def batch(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = builder.query_embeddings(rows)
        return add_noise(x, builder.noise_std, cfg.noise_scale_query, rng, cfg.renormalize) if cfg.noise else x

    ents = model.config.entities
    losses = fit_head(head, batch, labels, steps=ents.steps, batch_size=ents.batch_size, lr=ents.lr, seed=cfg.seed)
    named = labels.sum(0)
    info = {"entities": labels.shape[1], "entities_in_corpus": int((named > 0).sum()),
            "captions_with_entities": int((labels.sum(1) > 0).sum()), "head_losses": losses}
    if head.count is not None:
        info["count_losses"] = fit_count(head, batch, labels, steps=ents.count_steps, batch_size=ents.batch_size,
                                         lr=ents.lr, seed=cfg.seed)
    return info
