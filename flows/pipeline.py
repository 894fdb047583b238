"""The TOMCap pipeline as Prefect flows. Flows only compose tasks; every task is content-cached.

- ``prepare``: corpus -> text embeddings; unpaired images -> image embeddings; gap statistics; FAISS index
- ``train``: the adaptor on the prepared artifacts
- ``evaluate``: test images -> embeddings -> captions (generation) -> metrics
- ``tomcap_pipeline``: the three in order (the 'retrain' deployment)
"""
from __future__ import annotations

from prefect import flow

from tasks.stages import (corpus_task, embed_images_task, embed_task, evaluate_task, gap_task, generate_task,
                          index_task, train_task)
from flows.embed import embed_mapped
from flows.runners import task_runner
from tomcap.artifacts import ArtifactRef, load_ref
from tomcap.settings import PipelineConfig


@flow(name="tomcap-prepare")
def prepare(config: PipelineConfig, data_dir: str | None = None) -> dict[str, ArtifactRef]:
    """Stages 1-4: corpus, text embeddings, gap statistics (with unpaired images), datastore."""
    dd = str(config.resolved_data_dir(data_dir))
    corpus = corpus_task(config.corpus, dd)
    if config.embed.map_rows:
        embed = embed_mapped.with_options(task_runner=task_runner(config.runner))(config, dd, corpus)
    else:
        embed = embed_task(config.embed, dd, corpus=corpus)
    images = embed_images_task(config.embed_images, dd)
    gap = gap_task(config.gap, dd, text=embed, images=images)
    index = index_task(config.index, dd, embed=embed, corpus=corpus)
    return {"corpus": corpus, "embed": embed, "gap": gap, "index": index}


@flow(name="tomcap-train")
def train(config: PipelineConfig, corpus: ArtifactRef, embed: ArtifactRef, gap: ArtifactRef | None = None,
          index: ArtifactRef | None = None, data_dir: str | None = None) -> ArtifactRef:
    """Stage 5: the adaptor (text-only, or the paired oracle when train.query is 'image')."""
    dd = str(config.resolved_data_dir(data_dir))
    paired = embed_images_task(config.paired_images, dd) if config.train.query == "image" else None
    return train_task(config.train, dd, corpus=corpus, embed=embed, gap=gap, index=index, image_embed=paired)


@flow(name="tomcap-evaluate")
def evaluate(config: PipelineConfig, checkpoint: str, index: str, data_dir: str | None = None) -> dict[str, ArtifactRef]:
    """Stages 6-7 for a checkpoint and a datastore (artifact folders): caption the test images, score them.

    This is how a datastore is swapped: pass another index artifact; only these stages rerun."""
    dd = str(config.resolved_data_dir(data_dir))
    images = embed_images_task(config.test_images, dd)
    gen = generate_task(config.generate, dd, train=load_ref(checkpoint, "train"), index=load_ref(index, "index"),
                        images=images)
    return {"generate": gen, "evaluate": evaluate_task(config.evaluate, dd, generate=gen)}


@flow(name="tomcap-pipeline")
def tomcap_pipeline(config: PipelineConfig, data_dir: str | None = None) -> ArtifactRef:
    """The whole pipeline: prepare -> train -> evaluate; returns the evaluation artifact."""
    refs = prepare(config, data_dir)
    checkpoint = train(config, refs["corpus"], refs["embed"], refs["gap"], refs["index"], data_dir)
    return evaluate(config, checkpoint.path, refs["index"].path, data_dir)["evaluate"]
