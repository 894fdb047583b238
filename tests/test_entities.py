"""Entity hints: the vocabulary, the entity head trained by the train stage, its checkpoint, prompts and
cross-attention inputs in training and captioning, and bad vocabulary files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tomcap.cli.main import main
from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
from tomcap.embed.config import EmbedConfig
from tomcap.embed.stage import run_embed
from tomcap.errors import InputDataError
from tomcap.model import load_adaptor
from tomcap.model.config import EntityConfig
from tomcap.model.entities import EntityVocabulary, entity_prototypes, joint_counts
from tomcap.model.tiny import make_random_gpt2
from tomcap.train.config import TrainConfig
from tomcap.train.stage import run_train

COLORS, SHAPES = ("red", "blue", "green"), ("cube", "ball", "cone")
SINGLE = [f"a {c} {s} on the {g}" for c in COLORS for s in SHAPES for g in ("grass", "sand")]
PAIRS = [f"a {c} {s} and a {c2} {s2}" for c, s, c2, s2 in
         [("red", "cube", "blue", "ball"), ("green", "cone", "red", "ball"), ("blue", "cube", "green", "ball")]]
VOCAB = {f"{c} {s}": [f"{c} {s}"] for c in COLORS for s in SHAPES}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("entities")
    src = root / "captions.jsonl"
    caps = SINGLE + PAIRS
    src.write_text("".join(json.dumps({"caption": c, "image_id": f"img{i // 2}"}) + "\n" for i, c in enumerate(caps)))
    data_dir = root / "data"
    corpus = run_corpus(CorpusConfig(sources=[SourceConfig(path=src)]), data_dir)
    embed = run_embed(EmbedConfig(model="tomcap-test-tiny", dtype="float32"), data_dir, corpus)
    gpt2 = make_random_gpt2(root / "gpt2", caps * 3)
    vocab = root / "entities.json"
    vocab.write_text(json.dumps(VOCAB))
    return data_dir, corpus, embed, gpt2, vocab


def _cfg(gpt2: Path, vocab: Path | None, **entities) -> TrainConfig:
    ents = {"vocabulary": vocab, "steps": 300, "hidden": 64, "batch_size": 32, "lr": 3e-3} | entities
    return TrainConfig.model_validate(dict(model={"gpt2_dir": gpt2, "k": 1, "lora_rank": 2, "entities": ents},
                                           steps=2, batch_size=4, warmup_steps=1, eval_every=2, checkpoint_every=2,
                                           val_size=2, gap_correction=False, noise=False, lr=5e-3))


def test_vocabulary_matches_whole_phrases_plurals_longest_first():
    v = EntityVocabulary({"red cross": ["red cross", "red plus sign"], "red ball": ["red ball"], "plus": ["plus"]})
    assert v.names == ("plus", "red ball", "red cross")
    assert v.find("Two RED  plus signs, a red balls and plus") == [2, 1, 0]
    assert v.find("a redder ball, a red ballroom") == []
    assert v.labels(["a red ball", "nothing"]).tolist() == [[0, 1, 0], [0, 0, 0]]


def test_prototypes_prefer_captions_naming_the_entity_alone():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    emb = np.array([[1, 0], [0, 1], [0, 1]], np.float32)
    chunks = [(0, emb[:2]), (2, emb[2:])]  # read in two chunks, as the train stage does
    proto = entity_prototypes(chunks, labels)
    assert proto[0].tolist() == [1, 0] and proto[1].tolist() == [0, 1] and proto[2].tolist() == [0, 0]


def test_train_stage_fits_the_head_and_the_checkpoint_keeps_it(inputs, tmp_path):
    data_dir, corpus, embed, gpt2, vocab = inputs
    ref = run_train(_cfg(gpt2, vocab), data_dir, corpus=corpus, embed=embed)
    info = ref.manifest().info["entity_head"]
    assert info["entities"] == 9 and info["entities_in_corpus"] == 9
    assert info["head_losses"][-1] < info["head_losses"][0] / 4
    model = load_adaptor(ref.dir, device="cpu")
    assert model.config.entities.names == tuple(sorted(VOCAB)) and model.entities is not None
    # The head names the objects of a caption from its text embedding (training captions, no noise).
    from tomcap.embed.store import EmbeddingSet

    emb = EmbeddingSet.open(embed)
    texts = [t for t in (SINGLE + PAIRS)]
    order = {i: r for r, i in enumerate(emb.id_list().tolist())}
    from tomcap.corpus.stage import read_corpus

    df = read_corpus(corpus)
    x = np.stack([emb.rows(np.array([order[i]]))[0] for i in df["caption_id"].to_list()])
    lines, states = model.entity_hints(x)
    want = {t: ", ".join(sorted(set(VOCAB) & {f"{w[0]} {w[1]}" for w in zip(t.split()[1::3], t.split()[2::3])}))
            for t in texts}
    right = [set(line.split(", ")) == set(want[t].split(", ")) for line, t in zip(lines, df["text"].to_list())]
    assert np.mean(right) >= 0.8  # 2 of the 21 captions are the adaptor's validation rows, unseen by the head
    assert states.shape == (len(x), 3, 32)
    # the vocabulary's content is part of the key; where the file lies is not
    moved = tmp_path / "v.json"
    moved.write_text(vocab.read_text())
    assert run_train(_cfg(gpt2, moved), data_dir, corpus=corpus, embed=embed).cached
    moved.write_text(json.dumps(VOCAB | {"red thing": ["red thing"]}))
    assert not run_train(_cfg(gpt2, moved, steps=20), data_dir, corpus=corpus, embed=embed).cached


def test_hints_reach_the_prompt_and_cross_attention(inputs):
    from tomcap.generate.captioner import build_streams
    from tomcap.generate.guidance import COND
    from tomcap.generate.decoding import DecodeConfig

    data_dir, corpus, embed, gpt2, vocab = inputs
    model = load_adaptor(run_train(_cfg(gpt2, vocab), data_dir, corpus=corpus, embed=embed).dir, device="cpu")
    img = torch.nn.functional.normalize(torch.randn(2, 32), dim=-1)
    lines, _ = model.entity_hints(img)
    streams = build_streams(model, img, [["a red cube on the sand"]] * 2, torch.zeros(2, 1, 32),
                            DecodeConfig().guidance(), 60)
    for line, s in zip(lines, streams[COND]):
        text = model.tokenizer.decode(s.prompt_ids[1:])
        assert text.startswith(f"{model.config.prompt_prefix} {line}. a red cube on the sand.")
        # query + 1 retrieved + 3 entity slots, each 1 condition token
        assert s.encoder_states.shape == (1 + 1 + 3, model.d_model)


@pytest.mark.parametrize("case", ["missing", "not_json", "a_list", "empty_phrases", "names_nothing"])
def test_bad_vocabulary_is_named_exit_2(inputs, tmp_path, capsys, case):
    data_dir, corpus, embed, gpt2, _ = inputs
    vocab = tmp_path / "entities.json"
    content = {"not_json": "{oops", "a_list": json.dumps(["red cube"]), "empty_phrases": json.dumps({"red cube": []}),
               "names_nothing": json.dumps({"purple star": ["purple star"]})}.get(case)
    if content is not None:
        vocab.write_text(content)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"model": {"gpt2_dir": str(gpt2), "k": 1, "lora_rank": 2,
                                                       "entities": {"vocabulary": str(vocab), "steps": 5}},
                                             "steps": 2, "warmup_steps": 1, "val_size": 2, "gap_correction": False}}))
    before = set((data_dir / "artifacts" / "train").glob("*")) if (data_dir / "artifacts" / "train").exists() else set()
    code = main(["train", "--config", str(cfg), "--data-dir", str(data_dir), "--corpus", corpus.path,
                 "--embed", embed.path])
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if "Loading weights" not in x]  # transformers' progress bar
    assert code == 2 and str(vocab) in err and "Traceback" not in err and len(lines) == 1
    after = set((data_dir / "artifacts" / "train").glob("*"))
    assert after == before  # no partial artifact


def test_a_vocabulary_error_names_the_file():
    with pytest.raises(InputDataError, match="entity vocabulary not found"):
        EntityVocabulary.load("/nonexistent/entities.json")


def test_interrupted_training_with_entities_resumes_to_the_same_weights(inputs, tmp_path):
    from safetensors.numpy import load_file

    data_dir, corpus, embed, gpt2, vocab = inputs
    cfg = _cfg(gpt2, vocab, steps=50).model_copy(update={"steps": 4, "checkpoint_every": 2})

    class Stop(Exception):
        pass

    def stop_at_2(event):
        if event["step"] == 2:
            raise Stop

    other = tmp_path / "data"  # a fresh store with the same inputs: uninterrupted reference
    with pytest.raises(Stop):
        run_train(cfg, other, corpus=corpus, embed=embed, progress=stop_at_2)
    resumed = run_train(cfg, other, corpus=corpus, embed=embed)
    assert resumed.manifest().info["resumed_from"] == 2
    straight = run_train(cfg, data_dir, corpus=corpus, embed=embed)
    a, b = load_file(str(resumed.dir / "adaptor.safetensors")), load_file(str(straight.dir / "adaptor.safetensors"))
    assert set(a) == set(b) and any(k.startswith("entities.") for k in a)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_entity_inputs_keep_their_first_states_only(inputs):
    from tomcap.model import AdaptorConfig, build_adaptor

    _, _, _, gpt2, _ = inputs
    names = tuple(sorted(VOCAB))
    cfg = AdaptorConfig(gpt2_dir=gpt2, clip_dim=32, k=1, lora_rank=2, condition_tokens=4,
                        entities={"names": names, "hidden": 16, "tokens": 1})
    model = build_adaptor(cfg)
    cond = torch.nn.functional.normalize(torch.randn(2, 1 + 1 + 3, 32), dim=-1)
    states = model.project(cond)
    assert states.shape == (2, 4 + 4 + 3, model.d_model)
    full = build_adaptor(cfg.model_copy(update={"entities": cfg.entities.model_copy(update={"tokens": 0})}))
    all_states = full.project(cond)
    assert all_states.shape == (2, 4 * 5, model.d_model)
    # the kept state of each entity input is the first of its m states
    assert torch.allclose(states[:, 8:], all_states[:, 8::4])
    with pytest.raises(Exception, match="entity inputs last"):
        model.project(cond[:, :3])


def test_the_no_hint_demo_config_is_the_demo_without_entities():
    from tomcap.constants import DEMO_CONFIG_FILE
    from tomcap.settings import load_pipeline_config

    base = load_pipeline_config(DEMO_CONFIG_FILE).model_dump(mode="json")
    plain = load_pipeline_config(DEMO_CONFIG_FILE.with_name("demo_no_hints.yaml")).model_dump(mode="json")
    assert plain["train"]["model"]["entities"] is None and base["train"]["model"]["entities"]["count_hidden"] == 128
    assert (plain["train"]["steps"], base["train"]["steps"]) == (1000, 700)
    assert (plain["generate"]["decode"]["hint_bonus"], base["generate"]["decode"]["hint_bonus"]) == (0.0, 1.0)
    for cfg in (base, plain):
        cfg["train"]["model"]["entities"] = None
        cfg["generate"]["decode"]["hint_bonus"] = 0.0  # no hints to steer toward without an entity head
        for field in ("steps", "warmup_steps", "eval_every", "checkpoint_every"):  # the schedule, scaled with the steps
            del cfg["train"][field]
    assert plain == base


def test_caption_hints_are_shuffled_dropped_but_one_and_capped():
    from tomcap.model.entities import caption_hints

    labels = np.array([[1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], np.uint8)
    rng = np.random.default_rng(0)
    draws = [caption_hints(labels, 3, 0.0, rng) for _ in range(20)]
    assert all(len(d[0]) == 3 and set(d[0]) <= {0, 1, 2, 3} and d[1] == [1] and d[2] == [] for d in draws)
    assert len({tuple(d[0]) for d in draws}) > 3  # random order, not caption order
    dropped = [caption_hints(labels, 3, 0.9, rng) for _ in range(50)]
    assert all(1 <= len(d[0]) <= 3 and d[1] == [1] for d in dropped)  # a lone entity is never dropped
    assert np.mean([len(d[0]) for d in dropped]) < 2
    assert caption_hints(labels, 3, 0.4, np.random.default_rng(5)) == caption_hints(labels, 3, 0.4,
                                                                                     np.random.default_rng(5))


def test_training_batches_take_hints_from_captions_validation_from_the_head(inputs):
    from tomcap.train.data import ArrayRetrieval, BatchBuilder, TrainData

    data_dir, corpus, embed, gpt2, vocab = inputs
    cfg = _cfg(gpt2, vocab, train_hints="captions")
    model = load_adaptor(run_train(cfg, data_dir, corpus=corpus, embed=embed).dir, device="cpu")
    texts = SINGLE + PAIRS
    emb = torch.nn.functional.normalize(torch.randn(len(texts), 32), dim=-1).numpy()  # heads predict noise here
    builder = BatchBuilder(model, cfg, TrainData(texts, emb, [np.array([i]) for i in range(len(texts))]),
                           ArrayRetrieval(emb, texts))
    v = EntityVocabulary(VOCAB)
    builder.entity_labels = v.labels(texts)
    idx = np.arange(len(SINGLE), len(texts))  # the two-object captions
    batch = builder.build(idx, np.random.default_rng(1), cond_dropout=0.0)
    for row, i in enumerate(idx):
        text = model.tokenizer.decode(batch.input_ids[row][batch.attention_mask[row].bool()])
        hint = text.split(f"{model.config.prompt_prefix} ", 1)[1].split(".", 1)[0]
        assert set(hint.split(", ")) == {v.names[j] for j in v.find(texts[i])}, text
    val = builder.build(idx, np.random.default_rng(1), cond_dropout=0.0, caption_hints=False)
    lines, _ = model.entity_hints(emb[idx])
    for row, line in enumerate(lines):
        text = model.tokenizer.decode(val.input_ids[row][val.attention_mask[row].bool()])
        assert text.split(f"{model.config.prompt_prefix} ", 1)[1].startswith(line + ".")
    assert cfg.model.entities.key_dict()["train_hints"] == "captions"
    assert "train_hints" not in _cfg(gpt2, vocab).model.entities.key_dict()  # older cache keys stay valid


def _corpus_embeddings(corpus, embed) -> tuple[np.ndarray, list[str]]:
    from tomcap.corpus.stage import read_corpus
    from tomcap.embed.store import EmbeddingSet

    emb = EmbeddingSet.open(embed)
    order = {i: r for r, i in enumerate(emb.id_list().tolist())}
    df = read_corpus(corpus)
    return np.stack([emb.rows(np.array([order[i]]))[0] for i in df["caption_id"].to_list()]), df["text"].to_list()


def test_a_count_head_decides_how_many_entities_are_hinted(inputs):
    data_dir, corpus, embed, gpt2, vocab = inputs
    ref = run_train(_cfg(gpt2, vocab, count_hidden=16, count_steps=300), data_dir, corpus=corpus, embed=embed)
    info = ref.manifest().info["entity_head"]
    assert info["count_losses"][-1] < info["count_losses"][0] / 2
    model = load_adaptor(ref.dir, device="cpu")
    assert model.entities.count is not None
    x, texts = _corpus_embeddings(corpus, embed)
    chosen = model.entities.predict(x, threshold=0.999, max_entities=3)  # the count, not the threshold, decides
    v = EntityVocabulary(VOCAB)
    assert np.mean([len(c) == len(v.find(t)) for c, t in zip(chosen, texts)]) >= 0.8
    assert {len(c) for c in chosen} == {1, 2}


def test_the_joint_count_rule_weighs_the_count_head_against_the_entity_probabilities(inputs, caplog):
    # a count head sure of 2, entities sure of 1: the joint rule hints 1; both unsure: the count head decides
    logp = np.log(np.array([[0.3, 0.6, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7]]))
    top_p = np.array([[0.99, 0.05, 0.01], [0.9, 0.6, 0.4], [0.95, 0.9, 0.8]])
    assert joint_counts(logp, top_p).tolist() == [1, 2, 3]
    # brute force over every count: the cumulative sums pick the same argmax
    rng = np.random.default_rng(0)
    logp = np.log(rng.dirichlet(np.ones(4), size=50))
    top_p = -np.sort(-rng.random((50, 4)), 1)
    want = [1 + int(np.argmax([lc[n - 1] + np.log(p[:n]).sum() + np.log(1 - p[n:]).sum() for n in range(1, 5)]))
            for lc, p in zip(logp, top_p)]
    assert joint_counts(logp, top_p).tolist() == want
    assert joint_counts(np.log([[0.1, 0.2, 0.7]]), np.array([[0.9, 0.9]])).tolist() == [2]  # 2 entities, 3 counts

    import logging

    data_dir, corpus, embed, gpt2, vocab = inputs
    model = load_adaptor(run_train(_cfg(gpt2, vocab, count_hidden=16, count_steps=300), data_dir, corpus=corpus,
                                   embed=embed).dir, device="cpu")
    with caplog.at_level(logging.INFO, logger="tomcap.train.entity_cache"):  # the rule only reads the fitted heads
        joint_model = load_adaptor(run_train(_cfg(gpt2, vocab, count_hidden=16, count_steps=300, count_rule="joint"),
                                             data_dir, corpus=corpus, embed=embed).dir, device="cpu")
    assert "reused the fit" in caplog.text
    assert joint_model.config.entities.count_rule == "joint"
    heads = model.entities.state_dict(), joint_model.entities.state_dict()
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    x, _ = _corpus_embeddings(corpus, embed)
    head = model.entities.predict(x, threshold=0.5, max_entities=3, count_rule="head")
    joint = model.entities.predict(x, threshold=0.5, max_entities=3, count_rule="joint")
    assert all(j == h[:len(j)] or h == j[:len(h)] for h, j in zip(head, joint))  # same order, only the count differs
    with pytest.raises(ValueError, match="count_hidden"):
        EntityConfig(count_rule="joint")


def test_runs_whose_head_fit_reads_the_same_inputs_fit_it_once(inputs, tmp_path, caplog):
    """The retrieval ablation reads what the full run's head fit reads: it loads that fit (bit-identical to
    fitting it itself); a cache entry whose weights were changed is refitted, never loaded."""
    import logging

    from safetensors.numpy import load_file

    from tomcap.train.stage import ENTITY_HEADS_SUBDIR

    _, corpus, embed, gpt2, vocab = inputs
    full = _cfg(gpt2, vocab, steps=60)
    ablation = full.model_copy(update={"retrieval_prompt": False, "retrieval_cross": False})
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    run_train(full, shared, corpus=corpus, embed=embed)
    with caplog.at_level(logging.INFO, logger="tomcap.train.entity_cache"):
        reused = run_train(ablation, shared, corpus=corpus, embed=embed)
    assert "reused the fit" in caplog.text
    fitted = run_train(ablation, alone, corpus=corpus, embed=embed)

    def head(ref):
        return {k: v for k, v in load_file(str(ref.dir / "adaptor.safetensors")).items() if k.startswith("entities.")}

    a, b = head(reused), head(fitted)
    assert a and set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert reused.manifest().info["entity_head"] == fitted.manifest().info["entity_head"]
    entries = list((shared / ENTITY_HEADS_SUBDIR).iterdir())
    assert len(entries) == 1  # one fit for both runs, no temporary folder left
    other_seed = full.model_copy(update={"seed": 1})
    run_train(other_seed, shared, corpus=corpus, embed=embed)
    assert len(list((shared / ENTITY_HEADS_SUBDIR).iterdir())) == 2  # another seed is another fit

    weights = entries[0] / "head.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tomcap.train.entity_cache"):
        again = run_train(ablation.model_copy(update={"steps": 3}), shared, corpus=corpus, embed=embed)
    assert "not used (weights do not match head.json)" in caplog.text and "reused the fit" not in caplog.text
    c = head(again)
    assert all(np.array_equal(a[k], c[k]) for k in a)
    again2 = run_train(ablation.model_copy(update={"steps": 4}), shared, corpus=corpus, embed=embed)
    assert all(np.array_equal(a[k], v) for k, v in head(again2).items())  # the replaced entry is trusted again
