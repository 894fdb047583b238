"""Point a pipeline config at a generated world: corpus, image folders, references, CLIP for the metrics."""
from __future__ import annotations

from ..artifacts import ArtifactRef
from ..settings import PipelineConfig
from ..world.stage import world_artifact_paths


def demo_pipeline_config(cfg: PipelineConfig, world: ArtifactRef, unpaired: ArtifactRef) -> PipelineConfig:
    """``cfg`` with its inputs taken from the ``world`` artifact (and the gap's unpaired images from
    ``unpaired``). Pure: returns a new config."""
    w, u = world_artifact_paths(world), world_artifact_paths(unpaired)
    evaluate = cfg.evaluate.model_copy(update={"refs": w.test_annotations, "images": w.test_images_dir,
                                               "clip_model": cfg.embed.model, "clip_pretrained": cfg.embed.pretrained,
                                               "clip_init_seed": cfg.embed.init_seed})
    train = cfg.train
    if train.model.entities is not None:  # the world's own vocabulary
        ents = train.model.entities.model_copy(update={"vocabulary": w.entities})
        train = train.model_copy(update={"model": train.model.model_copy(update={"entities": ents})})
    return cfg.with_corpus(w.corpus_file, name="world").model_copy(update={
        "train": train,
        "embed_images": cfg.embed_images.model_copy(update={"images": u.test_images_dir}),
        "test_images": cfg.test_images.model_copy(update={"images": w.test_images_dir}),
        "paired_images": cfg.paired_images.model_copy(update={"images": w.train_images_dir}),
        "generate": cfg.generate.model_copy(update={"annotations": w.test_annotations}),
        "nearest": cfg.nearest.model_copy(update={"annotations": w.test_annotations}),
        "evaluate": evaluate,
    })
