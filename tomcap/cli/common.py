"""Options and output shared by every stage subcommand."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings reads every stage config: imported when a command runs, not for --help
    from ..artifacts import ArtifactRef
    from ..settings import PipelineConfig


def add_stage_args(p: argparse.ArgumentParser) -> None:
    """--config, --data-dir and --json, which every stage subcommand takes."""
    p.add_argument("--config", type=Path, default=None, help="pipeline YAML (see configs/)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="artifact root (default: config's data_dir, else $TOMCAP_DATA_DIR or ./data)")
    p.add_argument("--json", action="store_true",
                   help="print the artifact manifest as one JSON object on the last line")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid cached artifact exists")


def load_config(args: argparse.Namespace) -> tuple[PipelineConfig, Path]:
    from ..settings import load_pipeline_config

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


def corpus_of(embed: ArtifactRef, data_dir: Path) -> ArtifactRef:
    """The corpus artifact an embedding artifact was built from (looked up in the data dir)."""
    from ..artifacts import ArtifactStore, load_ref
    from ..errors import InputDataError

    corpus_fp = embed.manifest().upstream.get("corpus")
    store = ArtifactStore(data_dir)
    for m in store.list("corpus"):
        if m.fingerprint == corpus_fp:
            return load_ref(store.path_for("corpus", m.key), stage="corpus")
    raise InputDataError("the corpus of these embeddings is not in the data dir", path=embed.dir,
                         fix="pass --corpus DIR (the corpus artifact the embeddings were built from)")
