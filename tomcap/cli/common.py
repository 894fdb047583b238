"""Options and output shared by every stage subcommand."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..artifacts import ArtifactRef
from ..settings import PipelineConfig, load_pipeline_config


def add_stage_args(p: argparse.ArgumentParser) -> None:
    """--config, --data-dir and --json, which every stage subcommand takes."""
    p.add_argument("--config", type=Path, default=None, help="pipeline YAML (see configs/)")
    p.add_argument("--data-dir", type=Path, default=None, help="artifact root (default: config's data_dir, else $TOMCAP_DATA_DIR or ./data)")
    p.add_argument("--json", action="store_true", help="print the artifact manifest as one JSON object on the last line")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid cached artifact exists")


def load_config(args: argparse.Namespace) -> tuple[PipelineConfig, Path]:
    cfg = load_pipeline_config(args.config)
    return cfg, cfg.resolved_data_dir(args.data_dir)


def report(ref: ArtifactRef, args: argparse.Namespace, lines: list[str] | None = None) -> None:
    """Human summary, then (with --json) the manifest plus path and cached flag as the last line."""
    m = ref.manifest()
    state = "cached" if ref.cached else "built"
    print(f"{ref.stage}: {state} {ref.path}")
    for k, v in m.rows.items():
        if not isinstance(v, dict):
            print(f"  {k}: {v}")
    for line in lines or []:
        print(f"  {line}")
    if args.json:
        payload = m.model_dump(mode="json")
        payload.update(path=ref.path, cached=ref.cached)
        print(json.dumps(payload, sort_keys=True))


PREFECT_STARTUP_TIMEOUT_S = "180"
"""A busy 2-core machine can need well over Prefect's default to start the ephemeral server."""


def prefect_defaults() -> None:
    """Offline, telemetry-free Prefect with a patient ephemeral-server start (user settings win)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", PREFECT_STARTUP_TIMEOUT_S)
