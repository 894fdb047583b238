"""The generated world as a cached artifact (corpus JSONL + test split), so demo reruns reuse it."""
from __future__ import annotations

import json
from pathlib import Path

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from .config import WorldConfig
from .export import WorldPaths, generate_world, world_paths

SPEC = StageSpec(name="world", version="1", modules=("tomcap.world",))


def upstream_fingerprints(config: WorldConfig) -> dict[str, str]:
    return {}


def run_world(config: WorldConfig, data_dir: Path | str, *, force: bool = False) -> ArtifactRef:
    """Generate (or reuse) the world of ``config`` under ``data_dir``."""

    def build(tmp: Path) -> BuildOutput:
        paths = generate_world(tmp, config)
        info = json.loads(paths.info.read_text(encoding="utf-8"))
        return BuildOutput(rows={"train_captions": info["n_train_captions"], "test_images": info["n_test_images"]},
                           info={k: v for k, v in info.items() if k != "world_config"})

    return ArtifactStore(data_dir).build(SPEC, config, upstream_fingerprints(config), build, force=force)


def world_artifact_paths(ref: ArtifactRef) -> WorldPaths:
    """Where the corpus and the test split of a world artifact are."""
    return world_paths(ref.dir)
