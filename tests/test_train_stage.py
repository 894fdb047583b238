"""The train stage and `tomcap train` end to end on a tiny corpus, tiny CLIP and tiny random GPT-2."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec
from tomcap.cli.main import main
from tomcap.config import StageConfig
from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
from tomcap.embed.config import EmbedConfig
from tomcap.embed.stage import run_embed
from tomcap.errors import InputDataError
from tomcap.model import load_adaptor
from tomcap.model.tiny import make_random_gpt2
from tomcap.train.config import TrainConfig
from tomcap.train.stage import run_train

COLORS, SHAPES = ("red", "blue", "green", "yellow"), ("cube", "ball", "cone")
CAPTIONS = [(f"a {c} {s} on the {g}", f"{c}-{s}") for c in COLORS for s in SHAPES for g in ("grass", "sand", "table")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_stage")
    src = root / "captions.jsonl"
    src.write_text("".join(json.dumps({"caption": c, "image_id": i}) + "\n" for c, i in CAPTIONS))
    data_dir = root / "data"
    corpus = run_corpus(CorpusConfig(sources=[SourceConfig(path=src)]), data_dir)
    embed = run_embed(EmbedConfig(model="tomcap-test-tiny", dtype="float32"), data_dir, corpus)
    gpt2 = make_random_gpt2(root / "gpt2", [c for c, _ in CAPTIONS] * 3)
    return data_dir, corpus, embed, gpt2


def _cfg(gpt2: Path, **kw) -> TrainConfig:
    base = dict(model={"gpt2_dir": gpt2, "k": 2, "lora_rank": 4}, steps=4, batch_size=4, warmup_steps=1,
                eval_every=2, checkpoint_every=2, val_size=4, gap_correction=False, lr=5e-3)
    return TrainConfig.model_validate(base | kw)


def test_stage_builds_loadable_adaptor_and_caches(inputs):
    data_dir, corpus, embed, gpt2 = inputs
    events = []
    ref = run_train(_cfg(gpt2), data_dir, corpus=corpus, embed=embed, progress=events.append)
    m = ref.manifest()
    assert {"adaptor.safetensors", "checkpoint.json", "train_log.json"} <= set(m.files)
    assert m.rows["steps"] == 4 and m.rows["val_rows"] == 3 and m.rows["train_rows"] == len(CAPTIONS) - 3
    assert m.info["clip_dim"] == 32 and 0 < m.info["params"]["share"] < 1
    assert [e["step"] for e in events] == [1, 2, 3, 4] and "val_loss" in events[1]
    model = load_adaptor(ref.dir)
    assert model.config.clip_dim == 32 and model.config.gpt2_dir == gpt2
    with torch.no_grad():
        out = model(torch.tensor([model.prompt_ids(None)]), condition=None)
    assert out.logits.shape[-1] == model.decoder.config.vocab_size
    assert not (data_dir / "work" / "train").exists() or not any((data_dir / "work" / "train").iterdir())
    again = run_train(_cfg(gpt2), data_dir, corpus=corpus, embed=embed)
    assert again.cached and again.path == ref.path
    # Where it runs is not part of the key.
    assert run_train(_cfg(gpt2, threads=1), data_dir, corpus=corpus, embed=embed).cached


class _FakeGap(StageConfig):
    dim: int


def _gap_artifact(data_dir: Path, dim: int, fingerprint: str | None):
    gapmath = pytest.importorskip("tomcap.gapmath")
    v = np.full(dim, 0.5, np.float32)
    stats = gapmath.GaussianStats(mu_t=v * 0, sigma_t=v, mu_i=v * 0, sigma_i=v, noise_std=v * 0.1,
                                  meta={"model_fingerprint": fingerprint})
    return ArtifactStore(data_dir).build(StageSpec("gap", "test"), _FakeGap(dim=dim), {"fp": str(fingerprint)},
                                         lambda tmp: (gapmath.save_stats(stats, tmp), BuildOutput())[1])


def test_gap_stats_of_another_clip_model_is_rejected(inputs):
    data_dir, corpus, embed, gpt2 = inputs
    bad_dim = _gap_artifact(data_dir, 16, None)
    with pytest.raises(InputDataError, match="another CLIP model") as err:
        run_train(_cfg(gpt2, gap_correction=True), data_dir, corpus=corpus, embed=embed, gap=bad_dim)
    assert str(bad_dim.dir) in str(err.value)
    bad_model = _gap_artifact(data_dir, 32, "some-other-model")
    with pytest.raises(InputDataError, match="another CLIP model"):
        run_train(_cfg(gpt2, gap_correction=True), data_dir, corpus=corpus, embed=embed, gap=bad_model)
    assert not list((data_dir / "artifacts" / "train").glob(".tmp-*"))


def test_gap_corrected_training_runs(inputs):
    data_dir, corpus, embed, gpt2 = inputs
    good = _gap_artifact(data_dir, 32, embed.manifest().info["model_fingerprint"])
    ref = run_train(_cfg(gpt2, gap_correction=True, steps=2, eval_every=1), data_dir, corpus=corpus, embed=embed,
                    gap=good)
    assert ref.manifest().rows["steps"] == 2


def test_cli_train(inputs, tmp_path, capsys):
    data_dir, corpus, embed, gpt2 = inputs
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"model": {"gpt2_dir": str(gpt2), "k": 1, "lora_rank": 2}, "steps": 2,
                                             "batch_size": 4, "warmup_steps": 1, "val_size": 4,
                                             "gap_correction": False}}))
    code = main(["train", "--config", str(cfg), "--data-dir", str(data_dir), "--corpus", corpus.path,
                 "--embed", embed.path, "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["stage"] == "train" and payload["rows"]["steps"] == 2
    # Without --corpus the corpus is found from the embeddings' upstream fingerprint.
    assert main(["train", "--config", str(cfg), "--data-dir", str(data_dir), "--embed", embed.path]) == 0


def test_cli_bad_inputs(inputs, tmp_path, capsys):
    data_dir, corpus, embed, gpt2 = inputs
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"model": {"gpt2_dir": str(tmp_path / "missing")}, "steps": 2,
                                             "warmup_steps": 1, "gap_correction": False}}))
    code = main(["train", "--config", str(cfg), "--data-dir", str(data_dir), "--corpus", corpus.path,
                 "--embed", embed.path])
    err = capsys.readouterr().err
    assert code == 2 and "GPT-2 folder not found" in err and "gpt2_dir" in err
    code = main(["train", "--config", str(cfg), "--data-dir", str(data_dir), "--embed", corpus.path])
    assert code == 2 and "expected a 'embed' artifact" in capsys.readouterr().err
    cfg.write_text(yaml.safe_dump({"train": {"warmup_steps": 50, "steps": 10}}))
    assert main(["train", "--config", str(cfg), "--data-dir", str(data_dir), "--embed", embed.path]) == 2
    assert "warmup_steps" in capsys.readouterr().err
    cfg.write_text(yaml.safe_dump({"train": {"model": {"gpt2_dir": str(gpt2)}, "steps": 2, "warmup_steps": 1}}))
    assert main(["train", "--config", str(cfg), "--data-dir", str(data_dir), "--embed", embed.path]) == 2
    assert "--gap DIR" in capsys.readouterr().err
    assert not list((data_dir / "artifacts" / "train").glob(".tmp-*"))


def test_training_with_faiss_datastore_and_wrong_dim_index(inputs):
    from tomcap.index import IndexConfig, run_index

    data_dir, corpus, embed, gpt2 = inputs
    index = run_index(IndexConfig(eval_queries=4, eval_k=2), data_dir, embed=embed, corpus=corpus)
    ref = run_train(_cfg(gpt2, steps=2, eval_every=1), data_dir, corpus=corpus, embed=embed, index=index)
    assert ref.manifest().upstream["index"] == index.fingerprint
    # The glue excludes the caption itself and its image's captions (3 captions per image here).
    assert ref.manifest().info["data"]["mean_excluded"] == 3.0
    other = run_embed(EmbedConfig(model="tomcap-world-clip", dtype="float32"), data_dir, corpus)
    wrong = run_index(IndexConfig(eval_queries=4, eval_k=2), data_dir, embed=other, corpus=corpus)
    with pytest.raises(InputDataError, match="datastore holds dim-128") as err:
        run_train(_cfg(gpt2, steps=2), data_dir, corpus=corpus, embed=embed, index=wrong)
    assert str(wrong.dir) in str(err.value)
