"""Typed config of the evaluation stage."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ..config import StageConfig
from .loading import PairedKeys

_UNKEYED = ("refs", "results", "images", "device", "meteor_workers", "meteor_cache")
"""Fields left out of the cache key: file contents enter as upstream fingerprints, the rest is speed."""


class EvaluateConfig(StageConfig):
    """What to score and how. Paths may be left empty when the pipeline passes a generation artifact."""

    refs: Path | None = Field(default=None, description="references; omit for paired results files")
    results: list[Path] = Field(default_factory=list, description="results files or generation artifact folders")
    refs_key: str | None = Field(default=None, description="references field of paired files (default: detect)")
    pred_key: str | None = Field(default=None, description="prediction field of paired files (default: detect)")
    id_key: str | None = Field(default=None, description="image id field of paired/list files (default: detect)")
    meteor: bool = True
    meteor_workers: int | None = Field(default=None, ge=1, description="METEOR processes sharing the scoring "
                                       "(up to 2 GB heap each); default: one per core, at most 2")
    meteor_cache: bool = Field(default=True, description="keep METEOR paraphrase tables filtered to each reference "
                               "set evaluated twice under <data_dir>/cache/meteor (same scores; later runs "
                               "start ~7 s sooner and score with two processes)")
    spice: bool = Field(default=True, description="compute SPICE when its CoreNLP jars are installed")
    clip_model: str | None = Field(default=None, description="open_clip model for CLIPScore/RefCLIPScore/recall")
    clip_pretrained: str | None = Field(default=None, description="pretrained tag or weights file of clip_model")
    clip_init_seed: int = Field(default=0, description="seed of a random-init clip_model (clip_pretrained null); "
                                "equal to the pipeline's clip.init_seed it names the pipeline's CLIP")
    images: Path | None = Field(default=None, description="folder of the evaluated images (needed by CLIP metrics)")
    clip_batch_size: int = Field(default=64, ge=1)
    device: str | None = Field(default="auto", description="auto (or null): cuda when present, else cpu")
    report_samples: int = Field(default=5, ge=0, description="best and worst captions shown in report.md")
    require_full_coverage: bool | None = Field(default=None, description="refuse results that caption only part "
                                               "of the references (null: on when scoring a generation artifact, "
                                               "as the pipeline does; otherwise a warning)")

    @model_validator(mode="after")
    def _clip_needs_images(self) -> "EvaluateConfig":
        if (self.clip_model is None) != (self.images is None):
            raise ValueError("clip_model and images go together (CLIP metrics embed the evaluated images); "
                             "fix: set both, or neither")
        return self

    @property
    def paired_keys(self) -> PairedKeys:
        return PairedKeys(refs=self.refs_key, pred=self.pred_key, image=self.id_key)

    def key_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        for k in _UNKEYED:
            d.pop(k)
        return d
