"""The demo's comparison: full text-only TOMCap, its ablations, and the paired-training oracle.

Each variant is the base pipeline config with one switch flipped; shared stages (corpus, embeddings,
gap, index, test-image embeddings) have the same keys in every variant, so they are computed once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings imports the demo config: avoid the import cycle at run time
    from ..settings import PipelineConfig

FULL = "full"
VARIANTS = (FULL, "no_correction", "no_noise", "no_retrieval", "no_cfg", "paired_oracle")
UNGUIDED_SCALE = 1.0


def _with(cfg: PipelineConfig, section: str, **changes) -> PipelineConfig:
    sub = getattr(cfg, section)
    return cfg.model_copy(update={section: sub.model_copy(update=changes)})


def demo_variants(cfg: PipelineConfig) -> dict[str, PipelineConfig]:
    """Variant name -> pipeline config, in table order."""
    decode = cfg.generate.decode.model_copy(update={"guidance_scale": UNGUIDED_SCALE})
    return {
        FULL: cfg,
        "no_correction": _with(cfg, "train", gap_correction=False),
        "no_noise": _with(cfg, "train", noise=False),
        "no_retrieval": _with(cfg, "train", retrieval_prompt=False, retrieval_cross=False),
        "no_cfg": _with(cfg, "generate", decode=decode),
        "paired_oracle": _with(cfg, "train", query="image"),
    }
