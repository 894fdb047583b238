"""The content-addressed cache policy every tomcap task uses.

Prefect's default policy includes the run id (no reuse across runs) and hashes raw ``Path`` inputs
as text. Ours asks the stage itself for its key: stage name + code version + the stage's own
config + the content fingerprints of its inputs (the same key the library's artifact store uses),
so a rerun with unchanged inputs shows the task as Cached, and the CLI and Prefect share artifacts.

A cached Prefect record is only a pointer to an artifact folder. If that folder was deleted or
rebuilt since, the record is stale: the policy removes it so the task runs (and rebuilds) instead
of handing downstream a dangling reference.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from tomcap.artifacts import ArtifactRef, ArtifactStore, stage_key
from tomcap.config import hash_text

log = logging.getLogger(__name__)

CONFIG_ARG, DATA_DIR_ARG = "config", "data_dir"
"""Every stage task takes its config and the data dir under these names; other ArtifactRef
arguments (or name -> ArtifactRef dicts) are its upstream artifacts."""


def _is_refs(value: Any) -> bool:
    """An upstream input: one ArtifactRef, or a name -> ArtifactRef mapping (e.g. one per demo variant)."""
    if isinstance(value, ArtifactRef):
        return True
    return isinstance(value, dict) and bool(value) and all(isinstance(v, ArtifactRef) for v in value.values())


def stage_cache_key(stage_module: str, inputs: dict[str, Any]) -> tuple[str, str, str]:
    """(stage name, artifact key, Prefect record key) for a stage task's inputs."""
    mod = importlib.import_module(stage_module)
    refs = {k: v for k, v in inputs.items() if _is_refs(v)}
    # Plain (non-artifact) inputs that select what is computed, e.g. a scale-out task's row range.
    refs.update({k: inputs[k] for k in getattr(mod, "KEY_ARGS", ())})
    config = inputs[CONFIG_ARG]
    key = stage_key(mod.SPEC, config, mod.upstream_fingerprints(config, **refs))
    data_dir = str(Path(inputs[DATA_DIR_ARG]).resolve())
    return mod.SPEC.name, key, f"tomcap-{mod.SPEC.name}-{key}-{hash_text(data_dir, 8)}"


def _drop_if_stale(task: Any, record_key: str, current: ArtifactRef | None) -> None:
    from prefect.results import get_result_store

    store = get_result_store().update_for_task(task)
    if not store.exists(record_key):
        return
    try:
        cached = store.read(record_key).result
        fresh = current is not None and isinstance(cached, ArtifactRef) and cached.fingerprint == current.fingerprint
    except Exception as err:  # a record we cannot read is as stale as a dangling one
        log.warning("unreadable cache record %s (%s): dropping it", record_key, err)
        fresh = False
    if fresh:
        return
    storage = store.metadata_storage or store.result_storage
    resolve = getattr(storage, "_resolve_path", None)
    if resolve is None:
        log.warning("cannot drop stale cache record %s from %r; set PREFECT_TASKS_REFRESH_CACHE=true", record_key,
                    storage)
        return
    Path(resolve(record_key)).unlink(missing_ok=True)
    log.warning("dropped stale cache record %s (artifact missing or rebuilt)", record_key)


@dataclass
class StageCachePolicy(CachePolicy):
    """Cache key of a tomcap stage task, computed by the stage module named ``stage_module``."""

    stage_module: str = ""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        stage, key, record_key = stage_cache_key(self.stage_module, inputs)
        current = ArtifactStore(inputs[DATA_DIR_ARG]).find(stage, key)
        _drop_if_stale(task_ctx.task, record_key, current)
        return record_key


def stage_policy(stage_module: str) -> StageCachePolicy:
    return StageCachePolicy(stage_module=stage_module)
