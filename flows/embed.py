"""Scale-out text embedding: the corpus in row ranges mapped over the flow's task runner, then the
'embed' artifact assembled from them (the single-task run's key; values equal up to float rounding)."""
from __future__ import annotations

from prefect import flow

from tasks.embed_shards import embed_shard_task
from tasks.stages import STAGE_TASKS
from tomcap.artifacts import ArtifactRef
from tomcap.embed.shards import corpus_row_ranges
from tomcap.settings import PipelineConfig


@flow(name="tomcap-embed-mapped")
def embed_mapped(config: PipelineConfig, data_dir: str, corpus: ArtifactRef) -> ArtifactRef:
    """One embedding task per ``embed.map_rows`` corpus rows on this flow's task runner, then the
    assembly task (which encodes nothing: every caption is in a shard artifact)."""
    futures = [embed_shard_task.submit(config.embed, data_dir, corpus=corpus, start=a, stop=b)
               for a, b in corpus_row_ranges(config.embed, corpus)]
    shards = [f.result() for f in futures]
    return STAGE_TASKS["embed"](config.embed, data_dir, corpus=corpus, wait_for=shards)
