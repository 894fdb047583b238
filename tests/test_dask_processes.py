"""`tomcap pipeline --runner dask --workers 2`: the embedding on a LocalCluster of worker *processes*, through
the CLI, gives the serial run's embed artifact (same key, values equal up to float rounding)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flow_helpers import pipeline_yaml  # tests/ is on sys.path (pytest rootdir conftest)

from tomcap.artifacts import load_ref
from tomcap.embed import EmbeddingSet

DEADLINE_S = 900
MAP_ROWS = 100


def _tomcap(args: list[str], home: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("tomcap")
    env = dict(os.environ, PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=DEADLINE_S)


def _only(data_dir: Path, stage: str):
    dirs = [d for d in (data_dir / "artifacts" / stage).iterdir() if (d / "manifest.json").is_file()]
    assert len(dirs) == 1, dirs
    return load_ref(dirs[0], stage)


@pytest.mark.slow
@pytest.mark.prefect
def test_pipeline_on_dask_worker_processes_equals_serial(tmp_path):
    cfg = pipeline_yaml(tmp_path, n_scenes=60, train_steps=3)
    serial = _tomcap(["pipeline", "--config", str(cfg), "--data-dir", str(tmp_path / "serial")], tmp_path / "p1")
    assert serial.returncode == 0, serial.stderr[-3000:]
    dask = _tomcap(["pipeline", "--config", str(cfg), "--data-dir", str(tmp_path / "dask"), "--runner", "dask",
                    "--workers", "2", "--map-rows", str(MAP_ROWS)], tmp_path / "p2")
    assert dask.returncode == 0, dask.stderr[-3000:]

    a, b = _only(tmp_path / "serial", "embed"), _only(tmp_path / "dask", "embed")
    assert a.key == b.key
    shards = [d for d in (tmp_path / "dask" / "artifacts" / "embed_shard").iterdir() if d.is_dir()]
    n = EmbeddingSet.open(a).ids.height
    assert len(shards) == -(-n // MAP_ROWS) > 1
    assert b.manifest().rows["encoded"] == 0  # assembled from the shards the worker processes wrote
    ea, eb = EmbeddingSet.open(a), EmbeddingSet.open(b)
    assert ea.ids["caption_id"].to_list() == eb.ids["caption_id"].to_list()
    np.testing.assert_allclose(ea.array(np.float32), eb.array(np.float32), rtol=0, atol=1e-5)
    # Everything downstream saw the same inputs: the same keys.
    for stage in ("gap", "index", "train"):
        assert _only(tmp_path / "serial", stage).key == _only(tmp_path / "dask", stage).key, stage
