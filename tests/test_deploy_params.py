"""Typed run parameters of the deployments: the form's config over the config file, documented fields."""
from __future__ import annotations

import pytest
import yaml

from tomcap.errors import ConfigError
from tomcap.settings import PipelineConfig


def test_form_values_override_the_config_file_and_defaults_keep_it(tmp_path):
    from flows.deployments import resolve

    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump({"train": {"steps": 600, "lr": 0.02}, "corpus": {"sources": [{"path": "c.jsonl"}]}}))
    form = PipelineConfig.model_validate({"train": {"steps": 50, "warmup_steps": 5}})
    cfg = resolve(form, str(f))
    assert (cfg.train.steps, cfg.train.warmup_steps, cfg.train.lr) == (50, 5, 0.02)
    assert cfg.corpus.sources[0].path == tmp_path / "c.jsonl"  # relative to the file, as with the CLI
    assert resolve(None, str(f)).train.steps == 600
    # The UI form sends every field (raw JSON): only what differs from the defaults overrides the file, and the
    # result is validated once merged (steps 40 alone is fine against the file's warmup 5, not the default 30).
    f.write_text(yaml.safe_dump({"train": {"steps": 600, "warmup_steps": 5}}))
    raw = PipelineConfig().model_dump(mode="json")
    raw["train"]["steps"] = 40
    cfg = resolve(raw, str(f))
    assert (cfg.train.steps, cfg.train.warmup_steps) == (40, 5)
    raw["train"]["warmup_steps"] = 45
    with pytest.raises(ConfigError, match="warmup_steps"):
        resolve(raw, str(f))
    assert resolve(None, str(f), corpus_path=str(tmp_path / "new.jsonl")).corpus.sources[0].path.name == "new.jsonl"


def test_retrain_parameters_are_typed_and_documented():
    from prefect.utilities.callables import parameter_schema

    from flows.deployments import evaluate_checkpoint, retrain

    schema = parameter_schema(retrain.fn).model_dump()
    props = schema["properties"]
    assert set(props) == {"config", "config_file", "corpus_path", "data_dir"}
    assert all(props[k].get("description") for k in props), props
    assert "PipelineConfig" in str(schema["definitions"]) and "TrainConfig" in str(schema["definitions"])
    train_fields = schema["definitions"]["TrainConfig"]["properties"]
    assert train_fields["steps"]["default"] == PipelineConfig().train.steps
    assert not schema.get("required")  # "Quick run" needs no dialog
    ev = parameter_schema(evaluate_checkpoint.fn).model_dump()
    assert not ev.get("required") and ev["properties"]["model"]["default"] == "champion"
    assert all(v.get("description") for v in ev["properties"].values())


@pytest.mark.slow
@pytest.mark.prefect
def test_evaluate_deployment_compares_datastores_and_summarises_its_run(prefect_harness, tmp_path, capsys):
    import json

    from flow_helpers import pipeline_yaml, task_states_since
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.deployments import evaluate_checkpoint
    from tasks.summary import COMPARISON_KEY, SUMMARY_KEY
    from tomcap.cli.main import main

    config = pipeline_yaml(tmp_path, n_scenes=60, train_steps=3)
    data = tmp_path / "data"
    assert main(["run", "--config", str(config), "--data-dir", str(data), "--until", "generate", "--json"]) == 0
    up = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["upstream"]
    ckpt = next(p for p in (data / "artifacts" / "train").iterdir() if json.loads(
        (p / "manifest.json").read_text())["fingerprint"] == up["train"])
    index = next(p for p in (data / "artifacts" / "index").iterdir() if json.loads(
        (p / "manifest.json").read_text())["fingerprint"] == up["index"])
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"caption": f"a small red circle number {i} in the middle"}) + "\n"
                             for i in range(30)))
    import datetime as dt

    start = dt.datetime.now(dt.timezone.utc)
    evaluate_checkpoint(checkpoint=str(ckpt), index=[str(index)], corpora=[str(other)], config_file=str(config),
                        data_dir=str(data))
    states = task_states_since(start)
    assert len(states["generate"]) == 2 and len(states["embed_images"]) == 1, states  # test images: once
    assert len(list((data / "artifacts" / "generate").iterdir())) == 2  # the given datastore's was reused
    with get_client(sync_client=True) as client:
        table = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[COMPARISON_KEY])))
        summary = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SUMMARY_KEY])))
    rows = json.loads(table[0].data)
    assert [r["datastore"] for r in rows] == [index.name, "corpus:other.jsonl"] and all("CIDEr" in r for r in rows)
    assert summary and "## Metrics" in summary[0].data


@pytest.mark.slow
@pytest.mark.prefect
def test_retrain_registers_a_version_and_the_gate_decides_the_champion(prefect_harness, tmp_path):
    from flow_helpers import pipeline_yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.deployments import evaluate_checkpoint, retrain
    from tasks.models import PROMOTION_KEY
    from tomcap.registry import Registry

    config = pipeline_yaml(tmp_path, n_scenes=60, train_steps=3)
    data = str(tmp_path / "data")
    retrain(config_file=str(config), data_dir=data)
    registry = Registry(data)
    assert registry.state().aliases == {"latest": "v1", "champion": "v1"}
    # A second retrain from the run form (more steps): a new version; the gate (CIDEr, tolerance 0) decides.
    form = PipelineConfig.model_validate({"train": {"steps": 4, "warmup_steps": 2}})
    retrain(config=form, config_file=str(config), data_dir=data)
    state = registry.state()
    v1, v2 = registry.get("v1"), registry.get("v2")
    assert state.aliases["latest"] == "v2" and v2.record.checkpoint.key != v1.record.checkpoint.key
    promoted = v2.metrics["CIDEr"] >= v1.metrics["CIDEr"]
    assert state.aliases["champion"] == ("v2" if promoted else "v1")
    with get_client(sync_client=True) as client:
        promo = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[PROMOTION_KEY])))
    verdict = "promoted to **champion**" if promoted else "stays a **challenger**"
    assert any(a.data.startswith(f"# Model v2: {verdict}") for a in promo), [a.data[:40] for a in promo]
    ev = evaluate_checkpoint(config_file=str(config), data_dir=data)  # default: the champion's artifacts
    assert ev.manifest().upstream["generate"]
    # The CLI picks the champion too, any version by name, and names an unknown one.
    from pathlib import Path

    from tomcap.cli.main import main

    image = str(next(Path(yaml.safe_load(config.read_text())["test_images"]["images"]).glob("*.png")))
    for model in ([], ["--model", "v1"], ["--model", "latest"]):
        assert main(["caption", image, "--config", str(config), "--data-dir", data, "--json", *model]) == 0
    assert main(["caption", image, "--config", str(config), "--data-dir", data, "--model", "v9"]) == 2
