"""Entry points of the deployments in prefect.yaml: a config file (plus what an event or a user swaps).

The flows they call take the pydantic configs; these wrappers only load the YAML a deployment names,
so a scheduled or event-triggered run uses the same file a person would pass to the CLI.
"""
from __future__ import annotations

from prefect import flow

from flows.pipeline import evaluate, tomcap_pipeline
from tomcap.artifacts import ArtifactRef
from tomcap.corpus import SourceConfig
from tomcap.settings import load_pipeline_config


@flow(name="tomcap-retrain")
def retrain(config_file: str, corpus_path: str | None = None, data_dir: str | None = None) -> ArtifactRef:
    """The whole pipeline for ``config_file``; ``corpus_path`` (e.g. from a tomcap.corpus.updated event)
    replaces the config's corpus sources. Unchanged inputs finish Cached; a grown corpus recomputes its delta."""
    cfg = load_pipeline_config(config_file)
    if corpus_path:
        cfg = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"sources": [SourceConfig(path=corpus_path)]})})
    return tomcap_pipeline(cfg, data_dir)


@flow(name="tomcap-evaluate-checkpoint")
def evaluate_checkpoint(config_file: str, checkpoint: str, index: str, data_dir: str | None = None) -> ArtifactRef:
    """Caption and score ``config_file``'s test set with a checkpoint and a (possibly swapped) datastore."""
    return evaluate(load_pipeline_config(config_file), checkpoint, index, data_dir)["evaluate"]
