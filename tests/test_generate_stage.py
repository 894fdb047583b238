"""Generation stage on real tiny components: world -> corpus -> embed -> index -> train -> generate -> evaluate."""
from __future__ import annotations

import json

import pytest
from flow_helpers import world_datastore  # tests/ is on sys.path (pytest rootdir conftest)

from tomcap.corpus import read_corpus
from tomcap.embed import ImageEmbedConfig, run_embed_images
from tomcap.errors import ArtifactError
from tomcap.evaluate.config import EvaluateConfig
from tomcap.evaluate.stage import run_evaluate
from tomcap.generate.config import GenerateConfig
from tomcap.generate.decoding import DecodeConfig
from tomcap.generate.stage import run_generate
from tomcap.model import AdaptorConfig
from tomcap.model.tiny import make_random_gpt2
from tomcap.train.config import TrainConfig
from tomcap.train.stage import run_train

CLIP = "tomcap-test-tiny"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    world, data, corpus, embed, index, images = world_datastore(root, n_scenes=40, n_test=4, seed=3, clip=CLIP)
    gpt2 = make_random_gpt2(root / "gpt2", read_corpus(corpus)["text"].to_list())
    train_cfg = TrainConfig(model=AdaptorConfig(gpt2_dir=gpt2, k=2, lora_rank=4), steps=3, batch_size=4,
                            warmup_steps=1, gap_correction=False, val_size=4, eval_every=2, checkpoint_every=2)
    train = run_train(train_cfg, data, corpus=corpus, embed=embed, index=index)
    return world, data, corpus, embed, index, images, train


def test_generate_then_evaluate(built):
    world, data, _, _, index, images, train = built
    cfg = GenerateConfig(decode=DecodeConfig(strategy="beam", beam_size=2, max_new_tokens=5, guidance_scale=2.0),
                         annotations=world.test_annotations)
    gen = run_generate(cfg, data, train=train, index=index, images=images)
    results = json.loads(gen.file("results.json").read_text())
    coco = json.loads(world.test_annotations.read_text())
    assert sorted(r["image_id"] for r in results) == sorted(im["id"] for im in coco["images"])
    assert all(isinstance(r["caption"], str) for r in results)
    retrieved = json.loads(gen.file("retrieved.json").read_text())
    assert all(len(r["retrieved"]) == 2 for r in retrieved)
    assert run_generate(cfg, data, train=train, index=index, images=images).cached
    ev = run_evaluate(EvaluateConfig(refs=world.test_annotations, meteor=False), data, generate=gen)
    metrics = json.loads(ev.file("metrics.json").read_text())
    assert metrics["n_images"] == 4 and 0 <= metrics["CIDEr"] < 10
    changed = cfg.model_copy(update={"decode": cfg.decode.model_copy(update={"guidance_scale": 1.0})})
    assert not run_generate(changed, data, train=train, index=index, images=images).cached


def test_consensus_rerank_reads_deeper_than_the_prompt(built):
    world, data, _, _, index, images, train = built
    decode = DecodeConfig(strategy="beam", beam_size=3, max_new_tokens=5, clip_rerank=True)
    plain = GenerateConfig(decode=decode, annotations=world.test_annotations)
    cfg = plain.model_copy(update={"consensus_weight": 1.0, "consensus_k": 6})
    assert plain.key_dict() == GenerateConfig(decode=decode, annotations=world.test_annotations,
                                              consensus_k=6).key_dict()  # off: the key of captions made before it
    gen = run_generate(cfg, data, train=train, index=index, images=images)
    assert gen.key != run_generate(plain, data, train=train, index=index, images=images).key
    retrieved = json.loads(gen.file("retrieved.json").read_text())
    results = json.loads(gen.file("results.json").read_text())
    assert all(len(r["retrieved"]) == 2 for r in retrieved)  # the prompt keeps the checkpoint's k
    assert all(r["caption"] in ret["candidates"] for r, ret in zip(results, retrieved))


def test_images_from_another_clip_are_refused(built, tmp_path):
    world, data, _, _, index, _, train = built
    other = run_embed_images(ImageEmbedConfig(model=CLIP, init_seed=7, images=world.test_images_dir), data)
    with pytest.raises(ArtifactError, match="CLIP models differ"):
        run_generate(GenerateConfig(decode=DecodeConfig(max_new_tokens=3)), data, train=train, index=index,
                     images=other)
    assert not list((data / "artifacts" / "generate").glob("*/manifest.json")) or all(
        json.loads(p.read_text())["upstream"]["images"] != other.fingerprint
        for p in (data / "artifacts" / "generate").glob("*/manifest.json"))


def _caption_args(built, tmp_path, *extra, clip_seed=0):
    world, data, _, _, index, _, train = built
    cfg = tmp_path / "cap.yaml"
    cfg.write_text(f"clip: {{model: {CLIP}, init_seed: {clip_seed}}}\n"
                   "generate: {decode: {strategy: greedy, max_new_tokens: 4}}\n")
    images = sorted(world.test_images_dir.glob("*.png"))[:2]
    return ["caption", *map(str, images), "--config", str(cfg), "--data-dir", str(data), "--checkpoint", train.path,
            "--index", index.path, *extra], images


def test_caption_cli(built, tmp_path, capsys):
    from tomcap.cli.main import main

    args, images = _caption_args(built, tmp_path, "--guidance", "2.0")
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in images]


@pytest.mark.parametrize("case", ["negative_guidance", "bad_image", "other_clip"])
def test_caption_cli_bad_input(built, tmp_path, capsys, case):
    from tomcap.cli.main import main

    if case == "negative_guidance":
        args, _ = _caption_args(built, tmp_path, "--guidance", "-1")
        needle = "negative"
    elif case == "bad_image":
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"not a png")
        args, _ = _caption_args(built, tmp_path)
        args.insert(1, str(bad))
        needle = "broken.png"
    else:
        args, _ = _caption_args(built, tmp_path, clip_seed=7)
        needle = "CLIP models differ"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Fix:" in err


def test_pareto_front():
    from tomcap.generate.sweep import pareto_front

    xs, ys = [0.1, 0.5, 0.4, 0.9, 0.2], [0.9, 0.5, 0.4, 0.1, 0.2]
    assert pareto_front(xs, ys) == [0, 1, 3]
    assert pareto_front([1.0], [1.0]) == [0]


def test_sweep_guidance_cli(built, tmp_path, capsys):
    from tomcap.cli.main import main

    world, data, _, _, index, images, train = built
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"clip: {{model: {CLIP}}}\n"
                   f"generate: {{annotations: {world.test_annotations}, "
                   f"decode: {{strategy: greedy, max_new_tokens: 4}}}}\n"
                   f"evaluate: {{refs: {world.test_annotations}, meteor: false}}\n")
    out = tmp_path / "pareto.png"
    assert main(["sweep-guidance", "--config", str(cfg), "--data-dir", str(data), "--checkpoint", train.path,
                 "--index", index.path, "--images", images.path, "--scales", "0,1,3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 1000 and text.count("\n") >= 5
    assert main(["sweep-guidance", "--config", str(cfg), "--data-dir", str(data), "--checkpoint", train.path,
                 "--index", index.path, "--images", images.path, "--scales", "1,-2"]) == 2
