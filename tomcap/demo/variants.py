"""The demo's comparison: full text-only TOMCap, its ablations, and the paired-training oracle.

Each variant is the base pipeline config with one switch flipped; shared stages (corpus, embeddings,
gap, index, test-image embeddings) have the same keys in every variant, so they are computed once.
"""
from __future__ import annotations

from ..settings import PipelineConfig
from .config import FULL, VARIANTS

UNGUIDED_SCALE = 1.0


def _with(cfg: PipelineConfig, section: str, **changes) -> PipelineConfig:
    sub = getattr(cfg, section)
    return cfg.model_copy(update={section: sub.model_copy(update=changes)})


def all_variants(cfg: PipelineConfig) -> dict[str, PipelineConfig]:
    """Variant name -> pipeline config, for every name in ``VARIANTS``."""
    decode = cfg.generate.decode.model_copy(update={"guidance_scale": UNGUIDED_SCALE})
    out = {
        FULL: cfg,
        "no_correction": _with(cfg, "train", gap_correction=False),
        "no_noise": _with(cfg, "train", noise=False),
        # without the datastore in any role: not in the prompt, the cross-attention, nor the consensus rerank
        "no_retrieval": _with(_with(cfg, "train", retrieval_prompt=False, retrieval_cross=False), "generate",
                              consensus_weight=0.0),
        "no_cfg": _with(cfg, "generate", decode=decode),
        "paired_oracle": _with(cfg, "train", query="image"),
    }
    assert tuple(out) == VARIANTS, "every variant name in demo/config.py needs its config here"
    return out


def demo_variants(cfg: PipelineConfig) -> dict[str, PipelineConfig]:
    """The variants ``cfg.demo.variants`` selects, in that (table) order."""
    every = all_variants(cfg)
    return {name: every[name] for name in cfg.demo.variants}
