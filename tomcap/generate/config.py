"""Typed config of the generation stage."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ..config import StageConfig

if TYPE_CHECKING:  # torch: imported where decoding happens, not where a config is read
    from .guidance import Guidance


class DecodeConfig(StageConfig):
    """Decoding parameters (a change reruns only generation and evaluation)."""

    strategy: Literal["greedy", "beam", "sample"] = "beam"
    beam_size: int = Field(default=3, ge=1)
    num_samples: int = Field(default=8, ge=1, description="candidates per image for strategy 'sample'")
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    max_new_tokens: int = Field(default=24, ge=1)
    length_penalty: float = Field(default=1.0, description="beam score = sum logp / length**length_penalty")
    no_repeat_ngram_size: int = Field(default=3, ge=0, description="0 disables")
    guidance_scale: float = Field(default=1.0, ge=0, description="CFG gamma; 1 = conditional only, 0 = unconditional")
    lm_alpha: float | None = Field(default=None, description="LM guidance weight of log p(x|y); null disables")
    lm_beta: float = Field(default=0.0, ge=0, description="LM guidance weight of log p(x|null)")
    batched_guidance: bool = Field(default=True, description="cond and uncond streams in one forward pass")
    beam_groups: int = Field(default=1, ge=1, description="diverse beam search: beam_size splits into this many "
                             "groups (Vijayakumar et al. 2018); 1 = plain beam search")
    diversity_penalty: float = Field(default=0.0, ge=0, description="diverse beam search: log-score a group's "
                                     "candidate loses per earlier group that chose its token at the same step")
    clip_rerank: bool = Field(default=False, description="beam: rerank the finished beams by CLIP similarity to the "
                              "image (+ likelihood_weight x mean log-score), as sampling always does")
    hint_bonus: float = Field(default=0.0, ge=0, description="models with entity hints: log-score added to the "
                              "tokens that start or continue a hinted entity not yet named (0 = off)")
    seed: int = 0

    @model_validator(mode="after")
    def _rerank_needs_candidates(self) -> DecodeConfig:
        if self.clip_rerank and self.strategy == "greedy":
            raise ValueError("clip_rerank needs several candidates: use strategy 'beam' or 'sample'")
        if self.beam_size % self.beam_groups:
            raise ValueError(f"beam_size {self.beam_size} does not split into beam_groups {self.beam_groups}; "
                             "fix: make beam_size a multiple of beam_groups")
        return self

    def key_dict(self) -> dict:
        # Plain beam search as before these fields existed: its generated artifacts keep their keys.
        d = super().key_dict()
        if d.get("beam_groups") == 1 and d.get("diversity_penalty") == 0:
            d.pop("beam_groups")
            d.pop("diversity_penalty")
        if d.get("hint_bonus") == 0:
            d.pop("hint_bonus")
        return d

    @property
    def reranks(self) -> bool:
        """Whether candidates are reranked by CLIP (sampling always; beam search with ``clip_rerank``)."""
        return self.strategy == "sample" or self.clip_rerank  # greedy + clip_rerank is refused above

    def guidance(self) -> Guidance:
        from .guidance import Guidance  # torch: only when decoding, not when a config is read

        return Guidance(cfg_scale=self.guidance_scale, lm_alpha=self.lm_alpha, lm_beta=self.lm_beta)


class RegionConfig(StageConfig):
    """MacCap subregion aggregation of the image embedding (off by default)."""

    enabled: bool = False
    grid: int = Field(default=2, ge=1, description="grid x grid crops")
    global_weight: float = Field(default=0.5, ge=0, le=1, description="weight of the whole-image embedding")
    temperature: float = Field(default=0.1, gt=0, description="softmax temperature of crop weights")


class GenerateConfig(StageConfig):
    """Captioning of an image-embedding artifact with a trained adaptor and a datastore.

    ``k`` and whether retrieved captions go into the prompt / cross-attention follow the checkpoint's
    training config (what the adaptor learned), unless ``k`` is set here."""

    decode: DecodeConfig = DecodeConfig()
    k: int | None = Field(default=None, ge=0, description="retrieved captions per image; null: the checkpoint's k")
    likelihood_weight: float = Field(default=0.1, description="rerank weight of the mean log-score (strategy 'sample')")
    consensus_weight: float = Field(default=0.0, ge=0, description="rerank weight of each candidate's n-gram agreement "
                                    "with the datastore's consensus_k captions nearest the image (0 = off)")
    consensus_k: int = Field(default=16, ge=1, description="nearest captions the consensus rerank compares with")
    regions: RegionConfig = RegionConfig()
    batch_size: int = Field(default=32, ge=1, description="images per decoding batch")
    max_images: int | None = Field(default=None, ge=1, description="caption only the first N images")
    annotations: Path | None = Field(default=None, description="COCO annotation file: results use its image ids "
                                     "(matched by file name) instead of the image-embedding ids")

    @model_validator(mode="after")
    def _consensus_needs_rerank(self) -> GenerateConfig:
        if self.consensus_weight and not self.decode.reranks:
            raise ValueError("consensus_weight ranks candidates, but decoding does not rerank them; fix: set "
                             "generate.decode.clip_rerank: true (beam) or strategy: sample, or consensus_weight: 0")
        return self

    def key_dict(self) -> dict:
        d = super().key_dict()
        d["decode"] = self.decode.key_dict()
        if d.get("consensus_weight") == 0:  # artifacts captioned before consensus reranking keep their keys
            d.pop("consensus_weight")
            d.pop("consensus_k")
        return d


class NearestConfig(StageConfig):
    """Top-1 retrieval baseline over an image-embedding artifact."""

    batch_size: int = Field(default=256, ge=1, description="queries per datastore search")
    max_images: int | None = Field(default=None, ge=1, description="only the first N images")
    annotations: Path | None = Field(default=None, description="COCO annotation file: results use its image ids "
                                     "(matched by file name) instead of the image-embedding ids")
