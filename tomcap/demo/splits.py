"""Point a (wired) demo pipeline config at one evaluation split of the world: val, test or novel."""
from __future__ import annotations

from ..artifacts import ArtifactRef
from ..settings import PipelineConfig
from ..world.stage import world_artifact_paths


def split_pipeline_config(cfg: PipelineConfig, world: ArtifactRef, split: str) -> PipelineConfig:
    """``cfg`` with captioning and scoring on ``split``'s images and references (training unchanged). Pure."""
    sp = world_artifact_paths(world).split(split)
    return cfg.model_copy(update={
        "test_images": cfg.test_images.model_copy(update={"images": sp.images_dir}),
        "generate": cfg.generate.model_copy(update={"annotations": sp.annotations}),
        "nearest": cfg.nearest.model_copy(update={"annotations": sp.annotations}),
        "evaluate": cfg.evaluate.model_copy(update={"refs": sp.annotations, "images": sp.images_dir}),
    })
