"""Config of the offline demo: which worlds and variants it runs besides the pipeline sections."""
from __future__ import annotations

from pydantic import Field, field_validator

from ..config import StageConfig
from ..world.config import WorldConfig
from .report import DemoReportConfig

UNPAIRED_SEED_OFFSET = 1000
"""The unpaired image set (gap statistics) is a different world seed than the corpus and test split."""
FULL = "full"
VARIANTS = (FULL, "no_correction", "no_noise", "no_retrieval", "no_cfg", "paired_oracle")
"""Every demo variant, in table order (their configs: ``tomcap.demo.variants``)."""


class DemoConfig(StageConfig):
    """What ``tomcap demo`` runs besides the pipeline sections."""

    unpaired_world: WorldConfig = Field(
        default=WorldConfig(seed=UNPAIRED_SEED_OFFSET, n_train_scenes=1, n_test_images=500),
        description="world whose test images serve as the unpaired image set of the gap statistics")
    variants: tuple[str, ...] = Field(default=VARIANTS, description="rows of the demo table")
    splits: tuple[str, ...] = Field(default=("test",), description="world splits every row is evaluated on "
                                    "(val for tuning; test and novel for the reported table)")
    baselines: tuple[str, ...] = Field(default=("nearest_caption",), description="model-free rows: nearest_caption "
                                       "= the top-1 datastore caption of the image embedding")
    workers: int = Field(default=2, ge=1, description="processes that train, caption and score the variants "
                         "side by side (one core each at train.threads: 1)")
    report: DemoReportConfig = DemoReportConfig()

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from ..world.splits import EVAL_SPLITS

        bad = [s for s in v if s not in EVAL_SPLITS]
        if bad or not v:
            raise ValueError(f"unknown demo split(s) {bad}; fix: use some of {list(EVAL_SPLITS)}")
        return v

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(b != "nearest_caption" for b in v):
            raise ValueError(f"unknown baseline(s) {list(v)}; fix: use [nearest_caption] or []")
        return v

    @field_validator("variants")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; fix: use names from {list(VARIANTS)}")
        return names
