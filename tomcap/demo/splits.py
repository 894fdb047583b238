"""Point a (wired) demo pipeline config at one evaluation split of the world: val, test or novel."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..artifacts import ArtifactRef
from ..generate.nearest import NearestConfig
from ..world.stage import world_artifact_paths

if TYPE_CHECKING:  # settings imports the demo config: avoid the import cycle at run time
    from ..settings import PipelineConfig


def split_pipeline_config(cfg: PipelineConfig, world: ArtifactRef, split: str) -> PipelineConfig:
    """``cfg`` with captioning and scoring on ``split``'s images and references (training unchanged). Pure."""
    sp = world_artifact_paths(world).split(split)
    return cfg.model_copy(update={
        "test_images": cfg.test_images.model_copy(update={"images": sp.images_dir}),
        "generate": cfg.generate.model_copy(update={"annotations": sp.annotations}),
        "evaluate": cfg.evaluate.model_copy(update={"refs": sp.annotations, "images": sp.images_dir}),
    })


def nearest_config(cfg: PipelineConfig) -> NearestConfig:
    """The nearest_caption baseline over the same images and annotations as ``cfg``'s generation."""
    return NearestConfig(annotations=cfg.generate.annotations)


def nearest_evaluate_config(cfg: PipelineConfig, nearest: ArtifactRef):
    """``cfg.evaluate`` scoring the baseline's results file (evaluation reads a results file or a generation)."""
    return cfg.evaluate.model_copy(update={"results": [nearest.file("results.json")]})
