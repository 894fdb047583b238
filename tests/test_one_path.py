"""One path from checkpoint to caption, and one stage graph for the CLI and the flows.

- ``tomcap caption`` on image files == ``tomcap generate`` on the same images, for every trained
  variant (retrieval in prompt and/or cross-attention, none, LM guidance, MacCap sampling + rerank);
- ``tomcap run`` (no Prefect) and ``tomcap pipeline``'s flow build the same artifacts (same keys).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from flow_helpers import pipeline_yaml  # tests/ is on sys.path (pytest rootdir conftest)

from tomcap.artifacts import ArtifactStore
from tomcap.cli.main import main

pytestmark = pytest.mark.slow

TRAIN_VARIANTS = {
    "full": {},
    "no_retrieval": {"retrieval_prompt": False, "retrieval_cross": False},
    "prompt_only": {"retrieval_cross": False},
    "cross_only": {"retrieval_prompt": False},
}
DECODE_VARIANTS = {
    "beam_cfg": {"strategy": "beam", "beam_size": 2, "max_new_tokens": 5, "guidance_scale": 2.0},
    "lm_guidance": {"strategy": "greedy", "max_new_tokens": 5, "lm_alpha": 0.5, "lm_beta": 0.2},
    "sample_rerank": {"strategy": "sample", "num_samples": 3, "max_new_tokens": 5, "seed": 4},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("one-path")
    path = pipeline_yaml(root, n_scenes=60, train_steps=3)
    return path, yaml.safe_load(path.read_text())


def _variant_yaml(base: dict, folder: Path, train: dict, decode: dict) -> Path:
    cfg = json.loads(json.dumps(base))
    cfg["train"].update(train)
    cfg["generate"]["decode"] = decode
    cfg["generate"]["likelihood_weight"] = 0.3
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _json_last_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.parametrize("train_variant", sorted(TRAIN_VARIANTS))
def test_caption_equals_generate_for_every_variant(tiny, tmp_path, capsys, train_variant):
    base_path, base = tiny
    data = base_path.parent / "data"
    images_dir = Path(base["test_images"]["images"])
    coco = json.loads(Path(base["generate"]["annotations"]).read_text())
    file_of = {im["id"]: im["file_name"] for im in coco["images"]}
    decodes = DECODE_VARIANTS if train_variant == "full" else {"beam_cfg": DECODE_VARIANTS["beam_cfg"]}
    for name, decode in decodes.items():
        cfg = _variant_yaml(base, tmp_path / name, TRAIN_VARIANTS[train_variant], decode)
        assert main(["run", "--config", str(cfg), "--data-dir", str(data), "--until", "generate", "--json"]) == 0
        gen = _json_last_line(capsys.readouterr().out)
        results = json.loads((Path(gen["path"]) / "results.json").read_text())
        generated = {file_of[r["image_id"]]: r["caption"] for r in results}
        upstream = gen["upstream"]
        store = ArtifactStore(data)
        train = next(store.path_for("train", m.key) for m in store.list("train") if m.fingerprint == upstream["train"])
        index = next(store.path_for("index", m.key) for m in store.list("index") if m.fingerprint == upstream["index"])
        files = sorted(images_dir.glob("*.png"))
        assert main(["caption", *map(str, files), "--config", str(cfg), "--data-dir", str(data),
                     "--checkpoint", str(train), "--index", str(index), "--json"]) == 0
        captioned = {Path(r["file"]).name: r["caption"] for r in _json_last_line(capsys.readouterr().out)}
        assert captioned == generated, (train_variant, name)
        if name == "sample_rerank":
            retrieved = json.loads((Path(gen["path"]) / "retrieved.json").read_text())
            assert all(len(r["candidates"]) == 3 for r in retrieved)
            assert all(r["caption"] in c["candidates"] for r, c in zip(results, retrieved))


@pytest.mark.prefect
def test_cli_run_and_pipeline_flow_build_the_same_artifacts(prefect_harness, tmp_path, capsys):
    from flows.pipeline import tomcap_pipeline
    from tomcap.settings import load_pipeline_config

    config = pipeline_yaml(tmp_path, n_scenes=60, train_steps=3)

    def keys(data: Path) -> dict[str, set[str]]:
        store = ArtifactStore(data)
        return {stage: {m.key for m in store.list(stage)} for stage in
                ("corpus", "embed", "embed_images", "gap", "index", "train", "generate", "evaluate")}

    assert main(["run", "--config", str(config), "--data-dir", str(tmp_path / "cli")]) == 0
    tomcap_pipeline(load_pipeline_config(config), str(tmp_path / "flow"))
    by_cli, by_flow = keys(tmp_path / "cli"), keys(tmp_path / "flow")
    assert all(by_cli.values()) and by_cli == by_flow
