"""Typed config of the TOMCap adaptor (frozen GPT-2 + cross-attention + rsLoRA)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import StageConfig

LoraTarget = Literal["c_attn", "c_proj"]


class EntityConfig(StageConfig):
    """Entity hints (:mod:`tomcap.model.entities`): an entity head predicts the vocabulary entities of the query
    embedding; they go into the prompt and/or cross-attention. ``names`` is filled in from ``vocabulary`` by the
    train stage (what a checkpoint keeps; the file's content enters the cache key as an upstream fingerprint)."""

    vocabulary: Path | None = Field(default=None, description='JSON {"entity name": ["phrase", ...]}')
    names: tuple[str, ...] = Field(default=(), description="resolved from the vocabulary; leave empty")
    threshold: float = Field(default=0.5, gt=0, lt=1, description="entities with sigmoid probability above this")
    max_entities: int = Field(default=3, ge=1, le=16, description="at most this many entities per image")
    prompt: bool = Field(default=True, description="the entities as the first line of the prompt")
    cross: bool = Field(default=True, description="one cross-attention input per entity (its prototype embedding)")
    tokens: int = Field(default=0, ge=0, le=64, description="cross-attention states per entity input (its first "
                        "ones of the condition map); 0: model.condition_tokens")
    train_hints: Literal["predicted", "captions"] = Field(
        default="predicted", description="hints while training: the head's predictions on the noised query (as "
        "captioning gets them), or the entities the target caption names (ViECap), in random order")
    hint_dropout: float = Field(default=0.0, ge=0, lt=1, description="train_hints captions: each named entity left "
                                "out with this probability (one is always kept), so the decoder learns to fill in")
    hidden: int = Field(default=512, ge=1, description="width of the entity head's two hidden layers")
    count_hidden: int = Field(default=0, ge=0, description="> 0: a count head of this width predicts how many "
                              "entities to hint (1 ... max_entities) instead of the threshold")
    count_steps: int = Field(default=2000, ge=1, description="count head training steps (Adam, cross-entropy)")
    count_rule: Literal["head", "joint"] = Field(
        default="head", description="with a count head: 'head' hints its most probable count of the most probable "
        "entities; 'joint' the count n that maximises P(n) x the entity head's probability that exactly the top n "
        "of its entities are present (the count head and the entity head vote together)")
    steps: int = Field(default=4000, ge=1, description="entity head training steps (Adam, BCE)")
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "EntityConfig":
        if not (self.prompt or self.cross):
            raise ValueError("entities.prompt and entities.cross are both false; fix: set one true or drop entities")
        if self.count_rule == "joint" and not self.count_hidden:
            raise ValueError("entities.count_rule is 'joint' but there is no count head; fix: set "
                             "entities.count_hidden > 0 or count_rule: head")
        if self.hint_dropout and self.train_hints != "captions":  # predicted hints are never dropped
            raise ValueError("entities.hint_dropout is set but entities.train_hints is 'predicted'; fix: set "
                             "train_hints: captions or drop hint_dropout")
        return self

    def key_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d.pop("vocabulary")  # where the file lies is not what it holds (its content is an upstream fingerprint)
        if d["count_hidden"] == 0:
            del d["count_steps"]
        for name, before in (("tokens", 0), ("train_hints", "predicted"), ("hint_dropout", 0.0), ("count_hidden", 0),
                             ("count_rule", "head")):
            if d[name] == before:  # what entity configs were before the field
                del d[name]
        return d


class AdaptorConfig(StageConfig):
    """Architecture of the adaptor. Everything needed to rebuild it, except the weights.

    ``gpt2`` is a Hugging Face name (``gpt2``, ``gpt2-large``) and ``gpt2_dir`` a local folder that
    ``from_pretrained`` reads (it wins when set; relative paths in YAML are relative to the YAML).
    """

    gpt2: str = Field(default="gpt2", description="Hugging Face model name of the decoder")
    gpt2_dir: Path | None = Field(default=None,
                                  description="local GPT-2 folder (config.json, weights, tokenizer); overrides 'gpt2'")
    clip_dim: int | None = Field(default=None, ge=1,
                                 description="CLIP embedding width; null: taken from the embeddings")
    k: int = Field(default=4, ge=0, description="retrieved captions per example (prompt and cross-attention)")
    cross_attention_reduce: int = Field(default=4, ge=1, description="cross-attention width = d_model / this "
                                        "(SmallCap's 4: gpt2 at 5.9% trainable; 1 = full width, 18.9%)")
    condition_tokens: int = Field(default=1, ge=1, le=64,
                                  description="cross-attention states per CLIP embedding (ClipCap-style mapping "
                                  "to a short sequence); 1 = one linear projection per embedding")
    mapper_hidden: int = Field(default=0, ge=0,
                               description="0: condition states are a linear map of each CLIP embedding; > 0: "
                               "ClipCap's MLP mapper (linear, tanh, linear) with this hidden width")
    lora_rank: int = Field(default=8, ge=1)
    lora_alpha: float = Field(default=16.0, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    decoder_dropout: float | None = Field(default=None, ge=0.0, lt=1.0,
                                          description="GPT-2's residual/embedding/attention "
                                          "dropout while training; null keeps the checkpoint's (0.1 for gpt2)")
    lora_targets: tuple[LoraTarget, ...] = Field(default=("c_attn",),
                                                 description="self-attention projections that get LoRA")
    prompt_prefix: str = Field(default="Similar images show:", description="text before the retrieved captions")
    prompt_separator: str = Field(default=".", description="appended after each retrieved caption")
    prompt_suffix: str = Field(default="This image shows:", description="text right before the caption")
    max_length: int | None = Field(default=None, ge=8,
                                   description="max prompt+caption tokens; null: the decoder's n_positions")
    entities: EntityConfig | None = Field(default=None, description="entity hints; null: none")

    @model_validator(mode="after")
    def _check(self) -> "AdaptorConfig":
        if not self.lora_targets:
            raise ValueError("lora_targets is empty; fix: list at least 'c_attn'")
        if len(set(self.lora_targets)) != len(self.lora_targets):
            raise ValueError(f"lora_targets {list(self.lora_targets)} has duplicates; fix: list each once")
        return self

    @property
    def decoder_source(self) -> str:
        """What ``from_pretrained`` gets: the local folder if set, else the hub name."""
        return str(self.gpt2_dir) if self.gpt2_dir is not None else self.gpt2

    def key_dict(self) -> dict[str, Any]:
        # The folder's location must not change cache keys; its content enters through upstream fingerprints.
        d = self.model_dump(mode="json")
        d["gpt2_dir"] = None if self.gpt2_dir is None else "<local>"
        if d["condition_tokens"] == 1:  # what every adaptor was before the field: its trained artifacts stay cached
            del d["condition_tokens"]
        if d["mapper_hidden"] == 0:  # likewise for adaptors from before the MLP mapper
            del d["mapper_hidden"]
        if self.entities is None:  # and from before entity hints
            del d["entities"]
        else:
            d["entities"] = self.entities.key_dict()
        return d
