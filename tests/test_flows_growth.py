"""A corpus that grows by 1%: the rerun of the pipeline flow embeds only the new captions; the gap,
index and training recompute (their input changed); image embeddings are served from the cache."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from flow_helpers import pipeline_yaml, task_states_since  # tests/ is on sys.path (pytest rootdir conftest)

from tomcap.settings import load_pipeline_config

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

GROWTH = 0.01


def test_one_percent_more_captions_embeds_only_the_new_ones(prefect_harness, tmp_path):
    from flows.pipeline import tomcap_pipeline

    config_file = pipeline_yaml(tmp_path, n_scenes=200, train_steps=4)
    cfg = load_pipeline_config(config_file)
    data = str(tmp_path / "data")
    first = tomcap_pipeline(cfg, data)
    corpus_file = Path(cfg.corpus.sources[0].path)
    lines = corpus_file.read_text().splitlines()
    n_new = max(1, round(len(lines) * GROWTH))
    new = [json.dumps({"image_id": f"new-{i}", "caption": f"a tiny violet star number {i} in the top left corner"})
           for i in range(n_new)]
    corpus_file.write_text("\n".join(lines + new) + "\n")

    start = dt.datetime.now(dt.timezone.utc)
    second = tomcap_pipeline(cfg, data)
    states = task_states_since(start)
    for name in ("corpus", "embed", "gap", "index", "train", "generate"):
        assert states[name] == ["Completed"], (name, states)
    # A stage that recomputes but writes the same content leaves its downstream cached: the evaluation
    # reruns exactly when the retrained model's captions changed.
    manifests = (Path(data) / "artifacts" / "generate").glob("*/manifest.json")
    gens = {json.loads(m.read_text())["fingerprint"] for m in manifests}
    assert states["evaluate"] == (["Completed"] if len(gens) == 2 else ["Cached"]), (gens, states)
    assert (second.path != first.path) == (len(gens) == 2)
    assert states["embed_images"] and set(states["embed_images"]) == {"Cached"}, states

    embeds = sorted((Path(data) / "artifacts" / "embed").iterdir(), key=lambda p: p.stat().st_mtime)
    rows = json.loads((embeds[-1] / "manifest.json").read_text())["rows"]
    assert rows["encoded"] == n_new and rows["reused"] == rows["rows"] - n_new, rows
