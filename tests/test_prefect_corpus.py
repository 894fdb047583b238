"""The corpus flow under Prefect: the second run shows the task Cached; a deleted artifact is rebuilt."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tomcap.corpus import CorpusConfig, SourceConfig
from tomcap.settings import PipelineConfig

FIX = Path(__file__).parent / "fixtures" / "corpus"
pytestmark = pytest.mark.prefect


def _task_state(flow_state) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
    assert len(runs) == 1
    return runs[0].state.name


def test_corpus_flow_cached_on_rerun(prefect_harness, tmp_path):
    from flows.corpus import corpus_flow

    cfg = PipelineConfig(corpus=CorpusConfig(sources=[SourceConfig(path=FIX / "coco_karpathy_test_slice.json")]))
    first = corpus_flow(cfg, str(tmp_path), return_state=True)
    ref = first.result()
    assert _task_state(first) == "Completed" and (Path(ref.path) / "manifest.json").is_file()
    second = corpus_flow(cfg, str(tmp_path), return_state=True)
    assert _task_state(second) == "Cached" and second.result().path == ref.path
    shutil.rmtree(ref.path)  # a cache record must never point at a missing artifact
    third = corpus_flow(cfg, str(tmp_path), return_state=True)
    assert _task_state(third) == "Completed" and (Path(third.result().path) / "manifest.json").is_file()
    changed = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"shard_rows": 5})})
    fourth = corpus_flow(changed, str(tmp_path), return_state=True)
    assert _task_state(fourth) == "Completed" and fourth.result().path != ref.path
