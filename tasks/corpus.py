"""Prefect task for the corpus stage."""
from __future__ import annotations

from prefect import task

from tomcap.artifacts import ArtifactRef
from tomcap.corpus import CorpusConfig, run_corpus

from .cache import stage_policy
from .reporting import publish_corpus_stats

TASK_RETRIES = 1
RETRY_DELAY_S = 5


@task(name="corpus", task_run_name="corpus", cache_policy=stage_policy("tomcap.corpus"), persist_result=True,
      retries=TASK_RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def corpus_task(config: CorpusConfig, data_dir: str) -> ArtifactRef:
    """Caption files -> filtered Parquet corpus artifact."""
    ref = run_corpus(config, data_dir)
    publish_corpus_stats(ref)
    return ref
