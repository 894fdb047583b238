"""Entry points of the deployments in prefect.yaml, with typed run parameters.

``config`` is the whole pipeline config (every section, its defaults and field descriptions in the
run form); ``config_file`` (a YAML on the worker) gives the defaults the form's changes override.
Runs are named after what they work on, and the run a user opens carries a summary artifact.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import flow

from flows.pipeline import run_stages
from tasks.models import register_model
from tasks.summary import publish_datastore_comparison, publish_run_summary
from tomcap.artifacts import ArtifactRef, load_ref
from tomcap.config import canonical_json, hash_text
from tomcap.registry import CHAMPION, Registry
from tomcap.settings import PipelineConfig, load_pipeline_config, overlay

RUN_NAME_HASH_CHARS = 8


def resolve(config: PipelineConfig | Mapping[str, Any] | None, config_file: str | None,
            corpus_path: str | None = None) -> PipelineConfig:
    """The run's config: ``config_file``'s values, the form's changes on top, the event's corpus last."""
    cfg = load_pipeline_config(config_file) if config_file else PipelineConfig()
    if config is not None:
        cfg = overlay(cfg, config)
    return cfg.with_corpus(corpus_path) if corpus_path else cfg


def _corpus_tag(params: dict) -> str:
    """Short hash of the corpus sources' contents (what a retrain works on)."""
    from tomcap.corpus.stage import upstream_fingerprints

    try:
        cfg = resolve(params.get("config"), params.get("config_file"), params.get("corpus_path"))
        return hash_text(canonical_json(upstream_fingerprints(cfg.corpus)), RUN_NAME_HASH_CHARS)
    except Exception:  # the flow itself reports a bad config; the name only has to exist
        return "unreadable"


def retrain_run_name() -> str:
    """``retrain-<corpus fingerprint>-<UTC date>``."""
    from prefect.runtime import flow_run

    return f"retrain-{_corpus_tag(dict(flow_run.parameters))}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M}"


def evaluate_run_name() -> str:
    """``evaluate-<checkpoint key>-<datastore key>``."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    if not p.get("checkpoint"):
        return f"evaluate-{p.get('model') or CHAMPION}"
    index = p.get("index") or "model"
    n = len(index) if isinstance(index, list) else 1
    ckpt = Path(str(p.get("checkpoint") or "checkpoint")).name[:RUN_NAME_HASH_CHARS]
    store = f"{n}-datastores" if n > 1 else Path(str(index[0] if isinstance(index, list) else index)).name
    return f"evaluate-{ckpt}-{store[:RUN_NAME_HASH_CHARS]}"


# validate_parameters=False: the form's config is checked once merged with config_file (settings.overlay);
# the server still checks each field against the parameter schema before the run starts.
@flow(name="tomcap-retrain", flow_run_name=retrain_run_name, validate_parameters=False)
def retrain(config: PipelineConfig | None = None, config_file: str | None = None, corpus_path: str | None = None,
            data_dir: str | None = None) -> ArtifactRef:
    """The whole pipeline: corpus, embeddings, gap statistics, datastore, training, captions, metrics.

    Unchanged inputs finish Cached; a grown corpus recomputes its delta.

    Args:
        config: pipeline config; the fields set here override those of config_file
        config_file: pipeline YAML on the worker (relative paths inside it are relative to it); its values are
            the defaults of this run
        corpus_path: a caption file that replaces the corpus sources (set by a tomcap.corpus.updated event)
        data_dir: artifact root on the worker (default: the config's data_dir, else $TOMCAP_DATA_DIR or ./data)
    """
    cfg = resolve(config, config_file, corpus_path)
    refs = run_stages(cfg, data_dir, "evaluate")
    model = register_model(str(cfg.resolved_data_dir(data_dir)), {k: refs[k] for k in ("train", "index", "evaluate")},
                           cfg.promotion)
    publish_run_summary("retrain", refs, model)
    return refs["evaluate"]


def _datastores(cfg: PipelineConfig, data_dir: str | None, index: str | list[str],
                corpora: list[str] | None) -> dict[str, ArtifactRef]:
    """Datastore name -> index artifact: the index folders given, and one datastore per corpus file
    (built, or reused, through the graph: corpus -> embeddings -> index)."""
    out = {Path(p).name: load_ref(p, "index") for p in ([index] if isinstance(index, str) else index)}
    for path in corpora or []:
        out[f"corpus:{Path(path).name}"] = run_stages(cfg.with_corpus(path), data_dir, "index")["index"]
    return out


@flow(name="tomcap-evaluate-checkpoint", flow_run_name=evaluate_run_name, validate_parameters=False)
def evaluate_checkpoint(model: str = CHAMPION, checkpoint: str | None = None, index: str | list[str] | None = None,
                        corpora: list[str] | None = None, config: PipelineConfig | None = None,
                        config_file: str | None = None, data_dir: str | None = None) -> ArtifactRef:
    """Caption and score the test set with a checkpoint and one or more datastores.

    With several datastores (index folders, or caption files to index) the run also writes a comparison
    table, datastore x metrics; only generation and evaluation run per datastore.

    Args:
        model: model version or alias (champion, latest, v3) whose checkpoint and datastore are used where
            checkpoint / index are not given
        checkpoint: 'train' artifact folder on the worker (default: the model's)
        index: 'index' artifact folder (the datastore), or a list of them to compare (default: the model's)
        corpora: caption files on the worker, each indexed as one more datastore to compare
        config: pipeline config (test_images, generate, evaluate sections); fields set here override config_file's
        config_file: pipeline YAML on the worker whose values are the defaults of this run
        data_dir: artifact root on the worker
    """
    cfg = resolve(config, config_file)
    registered = None if checkpoint and index else Registry(cfg.resolved_data_dir(data_dir)).resolve(model)
    train = load_ref(checkpoint, "train") if checkpoint else registered["checkpoint"]
    index = index or registered["datastore"].path
    refs: dict[str, ArtifactRef] = {"train": train}
    evaluations = {}
    for name, store in _datastores(cfg, data_dir, index, corpora).items():
        shared = {k: v for k, v in refs.items() if k in ("train", "test_images")}
        refs = run_stages(cfg, data_dir, "evaluate", {**shared, "index": store})
        evaluations[name] = refs["evaluate"]
    if len(evaluations) > 1:
        publish_datastore_comparison(evaluations)
    publish_run_summary("evaluate", refs)
    return refs["evaluate"]
