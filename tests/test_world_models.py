"""World models: 1-step miniatures of both trainers (keeps the scripts alive), loading, probe, shipped files."""
from __future__ import annotations

import json

import pytest
import torch

from tomcap.cli.main import main
from tomcap.clip import load_clip
from tomcap.world import WORLD_CLIP_NAME, WORLD_CLIP_WEIGHTS, WORLD_GPT2_DIR, WorldConfig
from tomcap.world.config import ClipTrainConfig, Gpt2TrainConfig
from tomcap.world.probe import modality_gap, probe_clip
from tomcap.world.train_clip import record_path, train_clip
from tomcap.world.train_gpt2 import train_gpt2

SHIPPED_MAX_BYTES = 20 * 2**20
TINY_WORLD = WorldConfig(n_train_scenes=50, n_test_images=30)


def test_one_step_clip_trains_saves_and_loads(tmp_path):
    cfg = ClipTrainConfig(steps=1, finetune_steps=1, batch_size=4, warmup_steps=0,
                          extra_phases=[{"steps": 1, "lr": 1e-4, "mix": (1, 1, 1, 1)}])
    out = train_clip(cfg, TINY_WORLD, tmp_path / "clip.safetensors", device="cpu")
    assert out.weights.is_file() and record_path(out.weights).is_file()
    assert set(out.record["phases"]) == {"phase1", "phase2", "phase3"} and out.record["pairs_seen"] == 12
    clip = load_clip(WORLD_CLIP_NAME, pretrained=str(out.weights), device="cpu")
    assert clip.embed_dim == 128
    assert float(clip.model.logit_scale.detach().exp()) == pytest.approx(cfg.logit_scale, rel=1e-2)
    metrics = probe_clip(clip.model, clip.tokenizer, TINY_WORLD, n_images=10, binding_images=10)
    assert metrics["n_texts"] == 50 and 0.0 <= metrics["zero_shot_color"] <= 1.0
    assert metrics["n_multi"] > 0 and 0.0 <= metrics["binding_scene"] <= metrics["binding_object"] <= 1.0


def test_same_seed_same_clip_weights(tmp_path):
    from safetensors.torch import load_file

    cfg = ClipTrainConfig(steps=1, finetune_steps=1, batch_size=4, warmup_steps=0, extra_phases=())
    a = load_file(str(train_clip(cfg, TINY_WORLD, tmp_path / "a.safetensors", device="cpu").weights))
    b = load_file(str(train_clip(cfg, TINY_WORLD, tmp_path / "b.safetensors", device="cpu").weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_step_gpt2_loads_like_gpt2(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = Gpt2TrainConfig(steps=1, batch_size=4, warmup_steps=0, vocab_size=400, n_layer=1, n_embd=32, n_head=2,
                          n_train_scenes=30, n_heldout_scenes=5, real_captions_max=0)
    record = train_gpt2(cfg, TINY_WORLD, tmp_path / "gpt2", device="cpu")
    tok = AutoTokenizer.from_pretrained(tmp_path / "gpt2")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2")
    assert (tmp_path / "gpt2" / "tokenizer.json").is_file() and (tmp_path / "gpt2" / "model.safetensors").is_file()
    assert tok.eos_token == tok.pad_token == "<|endoftext|>" and model.config.eos_token_id == tok.eos_token_id
    ids = tok("a small red circle in the center", return_tensors="pt")["input_ids"]
    assert tok.decode(ids[0]) == "a small red circle in the center"
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))
    assert record["heldout_perplexity"] > 1.0
    n_single = record["n_world_captions"]
    assert record["n_packed_sequences"] == round(n_single * cfg.packed_share / (1 - cfg.packed_share))


def test_packed_documents_join_one_scenes_captions():
    import numpy as np

    from tomcap.world.train_gpt2 import PACK_SEPARATOR, packed_texts

    groups = [["a red circle", "a big red circle."], ["a blue star", "a tiny blue star"]]
    docs = packed_texts(groups, 20, np.random.default_rng(0))
    assert len(docs) == 20
    for d in docs:
        parts = d.rstrip(".").split(PACK_SEPARATOR)
        assert any(sorted(parts) == sorted(c.rstrip(".") for c in g) for g in groups), d


def test_modality_gap_is_centroid_distance():
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1]]), dim=-1)
    assert modality_gap(img, img) == pytest.approx(0.0)
    assert modality_gap(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])) == pytest.approx(2**0.5)


shipped = pytest.mark.skipif(not WORLD_CLIP_WEIGHTS.is_file() or not (WORLD_GPT2_DIR / "model.safetensors").is_file(),
                             reason="shipped world models not built yet")


@shipped
def test_shipped_models_fit_the_size_budget():
    total = WORLD_CLIP_WEIGHTS.stat().st_size + (WORLD_GPT2_DIR / "model.safetensors").stat().st_size
    assert total <= SHIPPED_MAX_BYTES


@shipped
def test_probe_cli_on_shipped_models(capsys):
    assert main(["world", "probe", "--n-images", "60", "--gpt2-heldout-scenes", "20", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    clip, gpt2 = metrics["clip"], metrics["gpt2"]
    assert clip["n_images"] == 60 and clip["zero_shot_color"] > 0.5
    assert clip["modality_gap"] > 0.3  # the gap the pipeline corrects must be there
    assert 1.0 < gpt2["heldout_perplexity"] < 20.0


def test_probe_cli_missing_models_is_a_clear_error(tmp_path, capsys):
    assert main(["world", "probe", "--models-dir", str(tmp_path), "--n-images", "5"]) == 2
    err = capsys.readouterr().err
    assert "tomcap-world-clip.safetensors" in err and "build-models" in err


@pytest.mark.slow
def test_build_models_cli_end_to_end(tmp_path, capsys):
    """The real `build-models` path with 1 training step each, a small test split and no real captions."""
    out = tmp_path / "models"
    assert main(["world", "build-models", "--out", str(out), "--clip-steps", "1", "--clip-finetune-steps", "1",
                 "--clip-extra-steps", "1", "--gpt2-steps", "1", "--n-test", "40",
                 "--real-captions", str(tmp_path / "absent.json")]) == 0
    card = (out / "README.md").read_text()
    assert "zero-shot shape" in card and "held-out perplexity" in card
    assert json.loads((out / "world_models_metrics.json").read_text())["clip"]["n_images"] == 40


def test_phase_single_object_share_reaches_the_batches_not_the_split(tmp_path, monkeypatch):
    import tomcap.world.train_clip as tc

    seen = []

    def spy(step, cfg, world, excluded):
        scenes, texts = real(step, cfg, world, excluded)
        seen.append((world.single_object_share, len(excluded), [len(s.objects) for s in scenes[:cfg.batch_size // 2]]))
        return scenes, texts

    real = tc.train_batch
    monkeypatch.setattr(tc, "train_batch", spy)
    cfg = ClipTrainConfig(steps=1, finetune_steps=1, batch_size=8, warmup_steps=0,
                          extra_phases=[{"steps": 2, "lr": 1e-4, "mix": (1, 1, 1, 1), "single_object_share": 0.0}])
    out = train_clip(cfg, TINY_WORLD, tmp_path / "clip.safetensors", device="cpu")
    assert out.record["train_config"]["extra_phases"][0]["single_object_share"] == 0.0
    (share1, excl1, _), (share2, _, _), *phase3 = seen
    assert share1 == share2 == TINY_WORLD.single_object_share and len(phase3) == 2
    # the phase's batches hold no one-object base scene; the excluded test keys are the world's own
    assert all(share == 0.0 and excl == excl1 and min(n) >= 2 for share, excl, n in phase3)


def test_gpt2_pretraining_skips_every_evaluation_split():
    """The frozen decoder must not have read captions of a validation, test or novel scene: the one shipped until
    2026-12-07 was trained before val and novel existed and saw 189 val scenes (benchmarks/results/val_overlap.md)."""
    from tomcap.world.captions import scene_captions
    from tomcap.world.scenes import scene_stream
    from tomcap.world.splits import EVAL_SPLITS, split_scenes
    from tomcap.world.train_gpt2 import TRAIN_STREAM, world_caption_groups

    # Single objects only: few distinct keys, so the GPT-2's stream repeats evaluation scenes that must be skipped.
    world = WorldConfig(seed=4, n_train_scenes=20, n_test_images=40, n_val_images=40, n_novel_images=20,
                        heldout_pairs=2, single_object_share=1.0)
    cfg = Gpt2TrainConfig(seed=4, n_train_scenes=3000, n_heldout_scenes=10)
    evaluation = {s.key() for split in EVAL_SPLITS for s in split_scenes(world, split)}
    drawn = scene_stream(cfg.seed, TRAIN_STREAM, cfg.n_train_scenes, world.max_objects, world.single_object_share)
    assert sum(s.key() in evaluation for s in drawn) > 0  # the exclusion has something to do
    groups, _ = world_caption_groups(cfg, world)
    kept = [s for s in drawn if s.key() not in evaluation]
    assert len(groups) == len(kept)
    assert groups == [scene_captions(s, world.captions_per_image, world.seed, world.relation_share) for s in kept]
