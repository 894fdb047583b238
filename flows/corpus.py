"""Flow for the corpus stage alone (the full pipeline composes the same task)."""
from __future__ import annotations

from prefect import flow

from tasks.stages import STAGE_TASKS
from tomcap.artifacts import ArtifactRef
from tomcap.settings import PipelineConfig


@flow(name="tomcap-corpus", log_prints=True)
def corpus_flow(config: PipelineConfig, data_dir: str | None = None) -> ArtifactRef:
    """Build (or reuse) the corpus artifact of ``config.corpus``."""
    return STAGE_TASKS["corpus"](config.corpus, str(config.resolved_data_dir(data_dir)))
