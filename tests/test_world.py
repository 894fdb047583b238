"""The world generator: determinism, caption/attribute consistency, export formats, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tomcap.cli.main import main
from tomcap.world import WorldConfig, generate_world, parse_caption, render_batch, scene_captions, scene_stream
from tomcap.world.captions import canonical_caption, scene_attributes, true_relations
from tomcap.world.config import ClipPhase
from tomcap.world.scenes import COLORS, SHAPES, mutate_scene
from tomcap.world.splits import test_keys as held_out_keys
from tomcap.world.splits import train_scenes

N = 300


def test_same_seed_same_scenes_pixels_and_captions():
    a, b = scene_stream(3, "train", N), scene_stream(3, "train", N)
    assert a == b
    assert np.array_equal(render_batch(a[:50]), render_batch(b[:50]))
    assert [scene_captions(s) for s in a] == [scene_captions(s) for s in b]
    assert scene_stream(4, "train", N) != a
    assert scene_stream(3, "test", N) != a


def test_scene_vocabulary_and_layout():
    scenes = scene_stream(0, "train", 2000)
    assert len(SHAPES) >= 6 and len(COLORS) >= 8
    assert {len(s.objects) for s in scenes} == {1, 2, 3}
    for s in scenes:
        cells = [(o.row, o.col) for o in s.objects]
        assert len(set(cells)) == len(cells)
    assert {o.shape for s in scenes for o in s.objects} == set(SHAPES)
    assert {o.color for s in scenes for o in s.objects} == set(COLORS)
    img = render_batch(scenes[:4])
    assert img.shape == (4, 64, 64, 3) and img.dtype == np.uint8


def test_every_caption_names_the_true_attributes():
    n_relational = 0
    for s in scene_stream(1, "train", N):
        caps = scene_captions(s, n=5)
        assert len(set(caps)) == 5
        truth = scene_attributes(s)
        for c in caps:
            p = parse_caption(c)
            assert (p.colors, p.shapes, p.sizes) == (truth.colors, truth.shapes, truth.sizes), c
            assert p.positions <= truth.positions, c
            if p.positions != truth.positions:
                # relational caption: two objects, relation really holds between them
                a, b = s.objects
                assert len(p.relations) == 1 and p.relations <= set(true_relations(a, b) + true_relations(b, a)), c
                n_relational += 1
            if p.background is not None:
                assert p.background == s.background
    assert n_relational > 0


def test_parser_on_free_text():
    p = parse_caption("A big violet plus sign in the upper left corner, to the left of a tiny red disk")
    assert p.colors == {"purple", "red"} and p.shapes == {"cross", "circle"} and p.sizes == {"large", "small"}
    assert p.positions == {"top left"} and p.relations == {"left of"}
    assert parse_caption("a man riding a horse").words() == set()
    assert parse_caption(canonical_caption("small", "blue", "star", 1, 1)).positions == {"middle center"}


def test_generate_world_formats_and_disjoint_splits(tmp_path):
    cfg = WorldConfig(n_train_scenes=400, n_test_images=40)
    paths = generate_world(tmp_path / "w", cfg)
    rows = [json.loads(line) for line in paths.corpus_file.read_text().splitlines()]
    assert rows and all(set(r) == {"caption", "image_id", "split"} for r in rows)
    coco = json.loads(paths.test_annotations.read_text())
    assert len(coco["images"]) == 40 and len(coco["annotations"]) == 200
    assert all((paths.test_images_dir / im["file_name"]).is_file() for im in coco["images"])
    train_ids = {r["image_id"] for r in rows}
    assert not train_ids & {im["scene_id"] for im in coco["images"]}
    assert not {s.key() for s in train_scenes(cfg)} & held_out_keys(cfg)
    again = generate_world(tmp_path / "w2", cfg)
    assert again.corpus_file.read_bytes() == paths.corpus_file.read_bytes()
    first = coco["images"][0]["file_name"]
    assert (again.test_images_dir / first).read_bytes() == (paths.test_images_dir / first).read_bytes()


def test_validation_and_novel_splits(tmp_path):
    from tomcap.world.splits import has_pair, heldout_pairs, split_scenes

    cfg = WorldConfig(n_train_scenes=600, n_test_images=30, n_val_images=30, n_novel_images=20, heldout_pairs=6)
    pairs = heldout_pairs(cfg)
    assert len(pairs) == 6 and len({c for c, _ in pairs}) == 6 and len({s for _, s in pairs}) == 6
    val, test, novel = (split_scenes(cfg, s) for s in ("val", "test", "novel"))
    assert (len(val), len(test), len(novel)) == (30, 30, 20)
    keys = [{s.key() for s in x} for x in (val, test, novel)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert all(has_pair(s, pairs) for s in novel) and not any(has_pair(s, pairs) for s in val + test)
    train = train_scenes(cfg)
    assert not any(has_pair(s, pairs) for s in train)
    assert not {s.key() for s in train} & (keys[0] | keys[1] | keys[2])
    paths = generate_world(tmp_path / "w", cfg)
    corpus = paths.corpus_file.read_text()
    # the held-out pairs never occur in a training caption (canonical words; synonyms are parsed the same way)
    from tomcap.demo.attributes import named_objects

    assert not {p for line in corpus.splitlines() for p in named_objects(json.loads(line)["caption"])} & pairs
    for split, n in (("val", 30), ("test", 30), ("novel", 20)):
        sp = paths.split(split)
        coco = json.loads(sp.annotations.read_text())
        assert len(coco["images"]) == n and len(sp.scenes.read_text().splitlines()) == n
        assert all((sp.images_dir / im["file_name"]).is_file() for im in coco["images"])
        # image ids are the numbers the file names end with, so an evaluation finds each image by its id
        assert all(im["file_name"] == f"{im['scene_id']}.png" and int(im["scene_id"][-7:]) == im["id"]
                   for im in coco["images"])
    # the test split of a world without held-out pairs is what it always was: the stream's first scenes
    assert [s.scene_id for s in split_scenes(WorldConfig(n_test_images=5), "test")] == [
        f"test-{i:07d}" for i in range(5)]


def test_novel_split_needs_heldout_pairs():
    with pytest.raises(ValueError, match="heldout_pairs"):
        WorldConfig(n_novel_images=5)


def test_corpus_stage_reads_the_world_corpus(tmp_path):
    from tomcap.corpus.config import SourceConfig
    from tomcap.corpus.readers import read_source

    paths = generate_world(tmp_path / "w", WorldConfig(n_train_scenes=20, n_test_images=5))
    fmt, lazy = read_source(SourceConfig(path=paths.corpus_file))
    frame = lazy.collect()
    assert fmt == "jsonl" and frame.height == len(paths.corpus_file.read_text().splitlines())
    assert frame["image_id"].null_count() == 0


def test_cli_generate_and_bad_out(tmp_path, capsys):
    assert main(["world", "generate", "--out", str(tmp_path / "w"), "--n-train", "10", "--n-test", "3"]) == 0
    assert "3 images" in capsys.readouterr().out
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["world", "generate", "--out", str(blocker), "--n-test", "3"]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "--out" in err


def test_swap_twin_keeps_the_words_and_changes_the_binding():
    rng = np.random.default_rng(0)
    multi = [s for s in scene_stream(0, "swap-test", 200, 3, 0.0) if len({o.color for o in s.objects}) > 1
             and len({o.shape for o in s.objects}) > 1][:50]
    assert multi
    swapped = 0
    for s in multi:
        twin = mutate_scene(s, rng, f"{s.scene_id}-twin", (0.0, 0.0, 0.0, 0.0, 1.0))
        pairs, twin_pairs = {(o.color, o.shape) for o in s.objects}, {(o.color, o.shape) for o in twin.objects}
        assert len(twin_pairs) == len(twin.objects), "a twin repeats a (colour, shape) pair"
        assert [(o.row, o.col, o.size) for o in twin.objects] == [(o.row, o.col, o.size) for o in s.objects]
        if twin_pairs != pairs and sorted(o.color for o in twin.objects) == sorted(o.color for o in s.objects):
            swapped += 1
        else:  # no exchange possible: falls back to a colour change of one object
            assert sum(a != b for a, b in zip(s.objects, twin.objects)) == 1
    assert swapped >= len(multi) // 2


def test_zero_swap_weight_is_the_four_weight_mix_and_single_objects_fall_back():
    rng = np.random.default_rng(1)
    single = scene_stream(0, "swap-single", 30, 3, 1.0)
    for s in single:
        twin = mutate_scene(s, rng, "t", (0.0, 0.0, 0.0, 0.0, 1.0))
        assert twin.objects[0].color != s.objects[0].color and twin.objects[0].shape == s.objects[0].shape
    a = mutate_scene(single[0], np.random.default_rng(5), "t", (1.0, 2.0, 3.0, 4.0))
    b = mutate_scene(single[0], np.random.default_rng(5), "t", (1.0, 2.0, 3.0, 4.0, 0.0))
    assert a == b
    with pytest.raises(ValueError):
        ClipPhase(steps=1, lr=1e-3, mix=(1.0, 1.0, 1.0))
