"""`tomcap pipeline --runner dask --workers 2`: the embedding on a LocalCluster of worker *processes*, through
the CLI, gives the serial embedding's artifact (same key, values equal up to float rounding)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flow_helpers import pipeline_yaml  # tests/ is on sys.path (pytest rootdir conftest)

from tomcap.artifacts import load_ref
from tomcap.corpus import run_corpus
from tomcap.embed import EmbeddingSet, run_embed
from tomcap.settings import load_pipeline_config

DEADLINE_S = 900
MAP_ROWS = 100


def _only(data_dir: Path, stage: str):
    dirs = [d for d in (data_dir / "artifacts" / stage).iterdir() if (d / "manifest.json").is_file()]
    assert len(dirs) == 1, dirs
    return load_ref(dirs[0], stage)


@pytest.mark.slow
@pytest.mark.prefect
def test_pipeline_on_dask_worker_processes_equals_serial(tmp_path):
    cfg_path = pipeline_yaml(tmp_path, n_scenes=60, train_steps=3)
    exe = Path(sys.executable).with_name("tomcap")
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.run([str(exe), "pipeline", "--config", str(cfg_path), "--data-dir", str(tmp_path / "dask"),
                           "--runner", "dask", "--workers", "2", "--map-rows", str(MAP_ROWS)],
                          capture_output=True, text=True, env=env, timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("train", "evaluate"):  # the whole pipeline ran on the mapped embedding
        _only(tmp_path / "dask", stage)

    cfg = load_pipeline_config(cfg_path)
    serial = run_embed(cfg.embed, tmp_path / "serial", corpus=run_corpus(cfg.corpus, tmp_path / "serial"))
    mapped = _only(tmp_path / "dask", "embed")
    assert mapped.key == serial.key
    shards = [d for d in (tmp_path / "dask" / "artifacts" / "embed_shard").iterdir() if d.is_dir()]
    a, b = EmbeddingSet.open(serial), EmbeddingSet.open(mapped)
    assert len(shards) == -(-a.ids.height // MAP_ROWS) > 1
    assert mapped.manifest().rows["encoded"] == 0  # assembled from the shards the worker processes wrote
    assert a.ids["caption_id"].to_list() == b.ids["caption_id"].to_list()
    # Up to float rounding: each task batches its own rows (so downstream content fingerprints may differ).
    np.testing.assert_allclose(a.array(np.float32), b.array(np.float32), rtol=0, atol=1e-5)
