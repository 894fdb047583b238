"""``tomcap verify``: check every artifact's files against its manifest (sizes and sha256)."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path

from ..artifacts import ArtifactStore, verify_artifact
from ..constants import TMP_PREFIX
from ..errors import ArtifactError
from ..settings import load_pipeline_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check every artifact against its manifest; lists damaged ones (exit 2 if any)")
    p.add_argument("--config", type=Path, default=None, help="pipeline YAML (for its data_dir)")
    p.add_argument("--data-dir", type=Path, default=None, help="artifact root (default: config's data_dir, "
                   "else $TOMCAP_DATA_DIR or ./data)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data_dir = load_pipeline_config(args.config).resolved_data_dir(args.data_dir)
    store = ArtifactStore(data_dir)  # a file given as the data dir is refused here
    if not data_dir.is_dir():
        raise ArtifactError("data dir not found", path=data_dir, fix="pass --data-dir of an existing data folder")
    n_ok, damaged, temps = 0, [], 0
    for stage in store.stages():
        temps += sum(1 for f in store.stage_dir(stage).glob(f"{TMP_PREFIX}*"))
        for folder in store.folders(stage):
            try:
                verify_artifact(folder, recheck=True)
                n_ok += 1
            except ArtifactError as err:
                damaged.append(str(err))
    for line in damaged:
        print(f"DAMAGED {line}")
    extra = f", {temps} temp folder(s) of interrupted runs (removed by the next build)" if temps else ""
    print(f"{store.root}: {n_ok} artifact(s) ok, {len(damaged)} damaged{extra}")
    return 2 if damaged else 0
