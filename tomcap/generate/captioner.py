"""From image embeddings and retrieved captions to caption text, with the TOMCap adaptor.

At inference the CLIP *image* embedding is used as it is (no gap correction, as in TOMCap): the
adaptor was trained on gap-corrected text embeddings, which live where image embeddings do.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .consensus import consensus_scores
from .decoding import DecodeConfig, Hypothesis, decode
from .guidance import ADAPTOR_MODEL, BASE_LM_MODEL, COND, LM, UNCOND, Guidance
from .hint_guide import hint_phrases
from .rerank import pick_best, rerank_scores
from .streams import Stream

log = logging.getLogger(__name__)

TextEncoder = Callable[[list[str]], np.ndarray]
"""Captions -> L2-normalised CLIP text embeddings (N, D), for reranking."""


@dataclass
class Caption:
    text: str
    score: float
    candidates: list[str]
    entities: str | None = None
    """The entity hint the decoder was given (models trained with entities), else None."""


def build_streams(model: nn.Module, image_emb: torch.Tensor, retrieved_texts: list[list[str]],
                  retrieved_emb: torch.Tensor | None, guidance: Guidance,
                  prompt_budget: int, entities: tuple | None = None) -> dict[str, list[Stream]]:
    """Streams per role for B images.

    image_emb (B, D_clip); retrieved_emb (B, K, D_clip) or None (no retrieval in cross-attention);
    retrieved_texts: K captions per image for the prompt ([] for none); ``entities``: ``model.entity_hints`` of
    ``image_emb`` when the caller has them already (computed here otherwise)."""
    clip = image_emb[:, None, :] if retrieved_emb is None else torch.cat([image_emb[:, None, :], retrieved_emb], 1)
    hints, entity_states = model.entity_hints(image_emb) if entities is None else entities
    if entity_states is not None:  # the order training used: query, retrieved captions, entities
        clip = torch.cat([clip, torch.from_numpy(entity_states).to(clip.dtype)], 1)
    if hints is not None:
        retrieved_texts = [[h, *texts] for h, texts in zip(hints, retrieved_texts)]
    with torch.inference_mode():
        states = model.project(clip.to(next(model.parameters()).device))
        null = model.null_states().detach()
    cond = [Stream(ADAPTOR_MODEL, model.prompt_ids(texts, budget=prompt_budget), states[i])
            for i, texts in enumerate(retrieved_texts)]
    streams = {COND: cond}
    if UNCOND in guidance.roles:
        streams[UNCOND] = [Stream(ADAPTOR_MODEL, model.prompt_ids(None), null) for _ in cond]
    if LM in guidance.roles:
        streams[LM] = [Stream(BASE_LM_MODEL, [model.eos_id]) for _ in cond]
    return streams


def caption_batch(model: nn.Module, image_emb: np.ndarray, retrieved_texts: list[list[str]],
                  retrieved_emb: np.ndarray | None, cfg: DecodeConfig, base_lm: nn.Module | None = None,
                  text_encoder: TextEncoder | None = None, likelihood_weight: float = 0.0,
                  neighbours: list[list[str]] | None = None, consensus_weight: float = 0.0) -> list[Caption]:
    """Captions for B images (image_emb (B, D) L2-normalised CLIP image embeddings).

    With ``strategy: sample`` (or beam search with ``clip_rerank``), each image's candidates are reranked by
    CLIP similarity to the image (+ ``likelihood_weight`` × mean log-score, + ``consensus_weight`` × agreement
    with the image's ``neighbours``, its nearest datastore captions), which needs ``text_encoder``."""
    guidance = cfg.guidance()
    if LM in guidance.roles and base_lm is None:
        raise ValueError("LM guidance (lm_alpha set) needs the base language model")
    model.eval()
    budget = model.max_length - cfg.max_new_tokens
    if budget < 2:
        raise ConfigError(f"generate.decode.max_new_tokens = {cfg.max_new_tokens} does not fit the decoder's context "
                          f"of {model.max_length} positions (the prompt needs at least 2)",
                          fix=f"set generate.decode.max_new_tokens <= {model.max_length - 2}")
    img = torch.tensor(np.asarray(image_emb), dtype=torch.float32)
    ret = None if retrieved_emb is None else torch.tensor(np.asarray(retrieved_emb), dtype=torch.float32)
    chosen = model.choose_entities(img)
    entities = model.entity_hints(img, chosen)
    phrases = None
    if cfg.hint_bonus:
        if chosen is None:
            raise ConfigError("generate.decode.hint_bonus is set but the checkpoint has no entity head",
                              fix="set hint_bonus: 0, or caption with a model trained with train.model.entities")
        names = model.config.entities.names
        phrases = hint_phrases(model.tokenizer, [[names[j] for j in js] for js in chosen])
    streams = build_streams(model, img, retrieved_texts, ret, guidance, budget, entities)
    models = {ADAPTOR_MODEL: model} if base_lm is None else {ADAPTOR_MODEL: model, BASE_LM_MODEL: base_lm}
    with torch.inference_mode():
        cands: list[list[Hypothesis]] = decode(models, streams, cfg, model.eos_id, model.pad_id, phrases)
    texts = [[model.decode(h.tokens) for h in c] for c in cands]
    hints = entities[0] or [None] * len(texts)
    if not cfg.reranks:
        return [Caption(t[0], c[0].score, t, h) for t, c, h in zip(texts, cands, hints)]
    if text_encoder is None:
        raise ValueError("reranking candidates needs a CLIP text encoder")
    # Beam search finishes a varying number of hypotheses per image: encode them flat, score per image.
    flat = text_encoder([t for ts in texts for t in ts])
    image = np.asarray(image_emb, dtype=np.float32)
    out, start = [], 0
    for b, (ts, hs) in enumerate(zip(texts, cands)):
        emb, start = flat[start:start + len(ts)], start + len(ts)
        scores = rerank_scores(image[b:b + 1], emb[None], np.array([[h.score for h in hs]]),
                               np.array([[len(h.tokens) + 1 for h in hs]]), likelihood_weight)[0]
        if consensus_weight:
            if neighbours is None:
                raise ValueError("consensus reranking needs each image's nearest captions")
            scores = scores + consensus_weight * consensus_scores(ts, neighbours[b])
        best = int(pick_best(scores[None])[0])
        out.append(Caption(ts[best], float(scores[best]), ts, hints[b]))
    return out
