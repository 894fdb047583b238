"""Typed config of the gap stage, apart from the stage so that reading a pipeline config imports no torch."""
from __future__ import annotations

import math

from pydantic import Field

from .config import StageConfig

CAPDEC_NOISE_VARIANCE = 0.016
"""Noise variance of CapDec / MacCap text-only training (their ``noise_variance`` default)."""
DEFAULT_NOISE_STD = math.sqrt(CAPDEC_NOISE_VARIANCE)
"""Per-dimension noise std used when no paired set gives a measured one."""


class GapConfig(StageConfig):
    """How the gap statistics are estimated and reported."""

    renormalize: bool = Field(default=True, description="L2-normalise corrected text embeddings")
    noise_std: float = Field(default=DEFAULT_NOISE_STD, ge=0,
                             description="per-dim noise std used when no paired set is given (CapDec: sqrt(0.016))")
    sample_rows: int = Field(default=20_000, ge=2,
                             description="rows per modality sampled for the Fréchet gap and plots")
    seed: int = 0
