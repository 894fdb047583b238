"""Typed config of the generation stage."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..config import StageConfig
from .decoding import DecodeConfig


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
    regions: RegionConfig = RegionConfig()
    batch_size: int = Field(default=32, ge=1, description="images per decoding batch")
    max_images: int | None = Field(default=None, ge=1, description="caption only the first N images")
    annotations: Path | None = Field(default=None, description="COCO annotation file: results use its image ids "
                                     "(matched by file name) instead of the image-embedding ids")
