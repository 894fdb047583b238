"""Typed run parameters of the deployments: the form's config over the config file, documented fields."""
from __future__ import annotations

import yaml

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
    assert set(ev["required"]) == {"checkpoint", "index"}
