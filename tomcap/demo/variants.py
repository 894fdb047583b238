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
        "no_retrieval": _with(cfg, "train", retrieval_prompt=False, retrieval_cross=False),
        "no_cfg": _with(cfg, "generate", decode=decode),
        "paired_oracle": _with(cfg, "train", query="image"),
    }
    assert tuple(out) == VARIANTS, "every variant name in demo/config.py needs its config here"
    return out


def demo_variants(cfg: PipelineConfig) -> dict[str, PipelineConfig]:
    """The variants ``cfg.demo.variants`` selects, in that (table) order."""
    every = all_variants(cfg)
    return {name: every[name] for name in cfg.demo.variants}


def training_order(variants: dict[str, PipelineConfig]) -> list[str]:
    """Variant names, the longest trainings first (longest-processing-time-first scheduling on the demo's pool):
    a training step that reads retrieved captions in its prompt takes ~1.5x one that does not (the demo's
    full: 255 s of steps, no_retrieval: 167 s), so the short no-retrieval training fills the end beside the
    captioning of the others instead of leaving the paired oracle to finish alone. Ties keep table order."""
    return sorted(variants, key=lambda name: not (variants[name].train.uses_retrieval
                                                  and variants[name].train.retrieval_prompt))
