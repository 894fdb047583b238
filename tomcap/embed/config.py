"""Typed configs of the text- and image-embedding stages."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config import StageConfig

DEFAULT_CLIP_MODEL = "ViT-B-32"
"""open_clip architecture of the paper; set ``pretrained`` to a tag or a local safetensors file."""
StoreDtype = Literal["float16", "float32"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
RUNTIME_FIELDS = frozenset({"batch_size", "device", "progress", "map_rows"})
"""Fields that change how fast, not what is computed: kept out of cache keys."""


class _ClipFields(StageConfig):
    model: str = Field(default=DEFAULT_CLIP_MODEL, description="open_clip model name (`tomcap models` lists them)")
    pretrained: str | None = Field(default=None, description="open_clip tag or local weights file; null = random init")
    init_seed: int = Field(default=0,
                           description="torch seed of random init (pretrained: null), "
                           "so equal configs give equal models")
    dtype: StoreDtype = Field(default="float16", description="on-disk dtype of the L2-normalised embeddings")
    precision: Precision = Field(default="fp32", description="autocast precision of the encoder; auto: bf16 on a "
                                 "bf16-capable GPU, else fp32 (bf16 is fast only on CPUs with native bf16)")
    batch_size: int = Field(default=256, ge=1)
    device: str | None = Field(default="auto", description="torch device; auto (or null): cuda when present, else cpu")
    shard_rows: int = Field(default=1_000_000, ge=1, description="rows per .npy shard")
    progress: bool | None = Field(default=None, description="tqdm bars (null: only on a terminal)")

    def key_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().key_dict().items() if k not in RUNTIME_FIELDS}


class EmbedConfig(_ClipFields):
    """Text embeddings of a corpus artifact."""

    truncate: bool = Field(default=True,
                           description="sort by length and cut batches to their longest caption (where exact)")
    reuse: bool = Field(default=True,
                        description="reuse embeddings of already-embedded caption ids (same model+weights)")
    map_rows: int | None = Field(default=None, ge=1,
                                 description="scale-out: embed the corpus in parallel tasks of this many "
                                 "rows (Prefect's task runner, e.g. Dask), then assemble; null: one task")

    def key_dict(self) -> dict[str, Any]:
        # Reuse and truncation only change speed (truncation is used only where it is exact).
        return {k: v for k, v in super().key_dict().items() if k not in {"reuse", "truncate"}}


class ImageEmbedConfig(_ClipFields):
    """Image embeddings of a folder (for the gap statistics, the paired set and inference)."""

    images: Path | None = Field(default=None, description="folder of images (searched recursively)")
    extensions: tuple[str, ...] = Field(default=(".jpg", ".jpeg", ".png", ".webp", ".bmp"),
                                        description="image suffixes")
    image_id_regex: str | None = Field(default=None,
                                       description="regex whose group 1 is the image id; default the file stem")
    skip_bad_images: bool = Field(default=False,
                                  description="skip unreadable images (named in the manifest) instead of failing")
    max_images: int | None = Field(default=None, ge=1, description="keep the first N files in sorted order")
