"""Config of the offline demo and the wiring of a pipeline config onto a generated world."""
from __future__ import annotations

from pydantic import Field

from ..config import StageConfig
from ..world.config import WorldConfig
from .report import DemoReportConfig

UNPAIRED_SEED_OFFSET = 1000
"""The unpaired image set (gap statistics) is a different world seed than the corpus and test split."""


class DemoConfig(StageConfig):
    """What ``tomcap demo`` runs besides the pipeline sections."""

    unpaired_world: WorldConfig = Field(
        default=WorldConfig(seed=UNPAIRED_SEED_OFFSET, n_train_scenes=1, n_test_images=500),
        description="world whose test images serve as the unpaired image set of the gap statistics")
    variants: tuple[str, ...] = Field(default=("full", "no_correction", "no_noise", "no_retrieval", "no_cfg",
                                               "paired_oracle"), description="rows of the demo table")
    report: DemoReportConfig = DemoReportConfig()
