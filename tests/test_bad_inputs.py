"""Bad input, one class per case: exit code 2, one `error:` line naming the file or field (and a fix), no
traceback, and no artifact left that a later run would trust.

The cases are the classes of issue 18 (non-string captions, a directory as a source, JSONL line numbers, the
same file twice, non-UTF-8 configs, a bad --data-dir, decompression bombs, non-finite numbers, decoding past
the decoder's context, a results file as references, partial coverage, damaged artifacts of the same size).
"""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from flow_helpers import world_datastore  # tests/ is on sys.path (pytest rootdir conftest)
from PIL import Image

from tomcap.cli.main import main

CLIP = "tomcap-test-tiny"
GOOD = "A small brown dog runs across the green grass."


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code: int, err: str, *needles: str) -> str:
    """The one error line of a refused command; asserts exit 2, no traceback and each needle in the line."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "fix:" in lines[0].lower()
    return lines[0]


def trusted(data: Path) -> set[Path]:
    """Artifact folders a later run would reuse (complete: with a manifest)."""
    return {p.parent for p in (data / "artifacts").glob("*/*/manifest.json")} if data.exists() else set()


# --- caption files -------------------------------------------------------------------------------------------

def _karpathy(values) -> str:
    return json.dumps([{"image_id": 1, "captions": [GOOD]}, {"image_id": 2, "captions": [GOOD + " Again.", values]}])


CAPTION_FILES = {
    "karpathy_number": ("caps.json", _karpathy(5), ["record #1", "'captions' holds a number"]),
    "karpathy_null": ("caps.json", _karpathy(None), ["record #1", "null"]),
    "karpathy_object": ("caps.json", _karpathy({"raw": GOOD}), ["record #1", "object"]),
    "nocaps_number": ("caps.json", json.dumps([{"image_id": 1, "caption": GOOD}, {"image_id": 2, "caption": 7}]),
                      ["record #1", "'caption' holds a number"]),
    "coco_list": ("caps.json", json.dumps({"annotations": [{"image_id": 1, "caption": GOOD},
                                                           {"image_id": 1, "caption": [GOOD]}]}),
                  ["annotation #1", "list"]),
    "jsonl_number": ("caps.jsonl", "\n".join([json.dumps({"caption": GOOD})] * 5 + ['{"caption": 12}']) + "\n",
                     ["line 6", "number"]),
    "jsonl_object": ("caps.jsonl", "\n".join([json.dumps({"caption": GOOD})] * 2 + ['{"caption": {"t": "a b c d"}}'])
                     + "\n", ["line 3", "object"]),
    "jsonl_broken_line": ("caps.jsonl", "\n".join([json.dumps({"caption": GOOD})] * 3 + ['{"caption": "x"',
                                                                                         json.dumps({"caption": GOOD})])
                          + "\n", ["line 4", "not valid JSON"]),
    "jsonl_not_object": ("caps.jsonl", json.dumps({"caption": GOOD}) + "\n[1, 2]\n", ["line 2", "not an object"]),
}


@pytest.mark.parametrize("case", sorted(CAPTION_FILES))
def test_bad_caption_files(tmp_path, capsys, case):
    name, text, needles = CAPTION_FILES[case]
    src = tmp_path / name
    src.write_text(text)
    data = tmp_path / "data"
    code, _, err = run_cli(capsys, "corpus", "--source", src, "--data-dir", data)
    error_line(code, err, str(src), *needles)
    assert not trusted(data)


def test_parquet_caption_column_of_numbers(tmp_path, capsys):
    import polars as pl

    src = tmp_path / "caps.parquet"
    pl.DataFrame({"caption": [1, 2, 3]}).write_parquet(src)
    code, _, err = run_cli(capsys, "corpus", "--source", src, "--data-dir", tmp_path / "data")
    error_line(code, err, str(src), "column 'caption'", "Int64")


def test_directory_as_source(tmp_path, capsys):
    folder = tmp_path / "captions"
    folder.mkdir()
    code, _, err = run_cli(capsys, "corpus", "--source", folder, "--data-dir", tmp_path / "data")
    line = error_line(code, err, str(folder), "is a directory")
    assert "not found" not in line


def test_same_file_twice_and_same_stem_in_two_folders(tmp_path, capsys):
    src = tmp_path / "caps.txt"
    src.write_text(f"{GOOD}\n")
    code, _, err = run_cli(capsys, "corpus", "--source", src, "--source", src, "--data-dir", tmp_path / "data")
    error_line(code, err, "given twice", str(src), "give each file once")
    # Different files of one stem: named after their folders, no config edit needed.
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "caps.txt").write_text(f"{GOOD} {sub} side.\n")
    code, out, err = run_cli(capsys, "corpus", "--source", tmp_path / "a" / "caps.txt", "--source",
                             tmp_path / "b" / "caps.txt", "--data-dir", tmp_path / "data")
    assert code == 0, err
    assert "a/caps: 1 in" in out and "b/caps: 1 in" in out


# --- config files and the data dir ---------------------------------------------------------------------------

def test_config_not_utf8(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes("corpus: {sources: [{path: caf\u00e9.txt}]}\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "corpus", "--config", cfg, "--data-dir", tmp_path / "data")
    error_line(code, err, str(cfg), "not UTF-8")


@pytest.mark.parametrize("case", ["is_a_file", "under_a_file"])
def test_bad_data_dir(tmp_path, capsys, case):
    src = tmp_path / "caps.txt"
    src.write_text(f"{GOOD}\n")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    data = blocker if case == "is_a_file" else blocker / "data"
    code, _, err = run_cli(capsys, "corpus", "--source", src, "--data-dir", data)
    error_line(code, err, str(data) if case == "is_a_file" else str(blocker), "data dir")
    assert blocker.read_text() == "a file"


def test_non_finite_number_in_a_config(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("generate: {decode: {guidance_scale: .nan}}\n")
    code, _, err = run_cli(capsys, "corpus", "--config", cfg, "--data-dir", tmp_path / "data")
    error_line(code, err, str(cfg), "guidance_scale", "finite")


def test_a_section_clip_that_contradicts_clip(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    sections = "".join(f"{s}: {{model: ViT-B-32}}\n" for s in ("embed", "embed_images", "test_images", "paired_images"))
    cfg.write_text("clip: {model: tomcap-test-tiny}\n" + sections)
    code, _, err = run_cli(capsys, "corpus", "--config", cfg, "--data-dir", tmp_path / "data")
    error_line(code, err, str(cfg), "clip.model is 'tomcap-test-tiny' but embed.model is 'ViT-B-32'")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("entities, named", [
    ("{hint_dropout: 0.3}", ("hint_dropout", "train_hints")),  # predicted training hints are never dropped
    ("{count_rule: joint}", ("count_rule", "count_hidden")),  # the joint rule votes with a count head
])
def test_an_entity_field_that_would_silently_do_nothing(tmp_path, capsys, entities, named):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"train: {{model: {{entities: {entities}}}}}\n")
    code, _, err = run_cli(capsys, "corpus", "--config", cfg, "--data-dir", tmp_path / "data")
    error_line(code, err, str(cfg), *named)
    assert not (tmp_path / "data").exists()


def test_consensus_rerank_without_reranking_is_refused(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"  # plain beam search keeps its first beam: the consensus weight would do nothing
    cfg.write_text("generate: {consensus_weight: 0.5, decode: {strategy: beam, clip_rerank: false}}\n")
    code, _, err = run_cli(capsys, "corpus", "--config", cfg, "--data-dir", tmp_path / "data")
    error_line(code, err, str(cfg), "consensus_weight", "clip_rerank: true")
    assert not (tmp_path / "data").exists()


def test_non_finite_override_is_refused_by_the_config_layer():
    from tomcap.errors import ConfigError
    from tomcap.generate.config import DecodeConfig

    with pytest.raises(ConfigError, match="guidance_scale = inf is not a finite number"):
        DecodeConfig().model_copy(update={"guidance_scale": float("inf")})


# --- embedding ---------------------------------------------------------------------------------------------

def test_embed_checks_the_model_before_building_the_corpus(tmp_path, capsys):
    src = tmp_path / "caps.txt"
    src.write_text(f"{GOOD}\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"corpus: {{sources: [{{path: {src}}}]}}\n")
    data = tmp_path / "data"
    code, _, err = run_cli(capsys, "embed", "--config", cfg, "--data-dir", data, "--model", "no-such-model")
    error_line(code, err, "no-such-model", "tomcap models")
    assert not (data / "artifacts" / "corpus").exists()  # refused before any work


def write_png(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    Image.new("RGB", (8, 8), (120, 60, 30)).save(path)
    if size != (8, 8):  # a header claiming another size: PIL reads it at open, before any pixel
        raw = bytearray(path.read_bytes())
        ihdr = bytes(raw[12:16]) + struct.pack(">II", *size) + bytes(raw[24:29])
        raw[16:24] = struct.pack(">II", *size)
        raw[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
        path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("pixels", ["warning_level", "error_level"])
def test_decompression_bomb_in_embed_images(tmp_path, capsys, pixels):
    folder = tmp_path / "imgs"
    folder.mkdir()
    write_png(folder / "good.png")
    # PIL warns above MAX_IMAGE_PIXELS (~89 M) and raises above twice that; both are refused.
    bomb = write_png(folder / "bomb.png", (10_000, 10_000) if pixels == "warning_level" else (30_000, 30_000))
    data = tmp_path / "data"
    code, _, err = run_cli(capsys, "embed-images", "--images", folder, "--model", CLIP, "--data-dir", data)
    error_line(code, err, str(bomb), "decompression bomb", "--skip-bad-images")
    assert not trusted(data)
    code, out, err = run_cli(capsys, "embed-images", "--images", folder, "--model", CLIP, "--data-dir", data,
                             "--skip-bad-images")
    assert code == 0, err
    assert f"skipped {bomb}" in out and "decompression bomb" in out


# --- evaluation inputs ---------------------------------------------------------------------------------------

def _coco_refs(path: Path, ids: list[int]) -> Path:
    anns = [{"image_id": i, "id": 10 * i + j, "caption": f"{GOOD} number {i} {j}"} for i in ids for j in range(3)]
    path.write_text(json.dumps({"images": [{"id": i} for i in ids], "annotations": anns}))
    return path


def _results(path: Path, ids: list[int]) -> Path:
    path.write_text(json.dumps([{"image_id": i, "caption": f"a brown dog runs on grass {i}"} for i in ids]))
    return path


def test_results_file_as_refs(tmp_path, capsys):
    res = _results(tmp_path / "res.json", [1, 2, 3])
    code, _, err = run_cli(capsys, "evaluate", "--refs", res, "--results", res, "--no-meteor",
                           "--data-dir", tmp_path / "data")
    error_line(code, err, str(res), "like a results file", "--refs")
    assert not trusted(tmp_path / "data")


def test_missing_refs_file_is_named(tmp_path, capsys):
    res = _results(tmp_path / "res.json", [1])
    missing = tmp_path / "nowhere" / "refs.json"
    code, _, err = run_cli(capsys, "evaluate", "--refs", missing, "--results", res, "--no-meteor",
                           "--data-dir", tmp_path / "data")
    error_line(code, err, str(missing), "not found")


def test_partial_coverage_is_recorded_warned_and_refused_on_request(tmp_path, capsys, caplog):
    refs = _coco_refs(tmp_path / "refs.json", [1, 2, 3, 4])
    res = _results(tmp_path / "res.json", [1, 2, 3])
    data = tmp_path / "data"
    code, _, err = run_cli(capsys, "evaluate", "--refs", refs, "--results", res, "--no-meteor", "--data-dir", data,
                           "--require-full-coverage")
    error_line(code, err, str(res), "3 of the 4 reference images", "--require-full-coverage")
    assert not trusted(data)
    with caplog.at_level("WARNING"):
        code, out, err = run_cli(capsys, "evaluate", "--refs", refs, "--results", res, "--no-meteor",
                                 "--data-dir", data, "--json")
    assert code == 0 and "3 of the 4 reference images (75.0%)" in caplog.text
    metrics = json.loads((Path(json.loads(out.splitlines()[-1])["path"]) / "metrics.json").read_text())
    assert metrics["coverage"] == {"images_scored": 3, "images_in_refs": 4, "fraction": 0.75}


# --- generation: a trained tiny model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tomcap.corpus import read_corpus
    from tomcap.model import AdaptorConfig
    from tomcap.model.tiny import make_random_gpt2
    from tomcap.train.config import TrainConfig
    from tomcap.train.stage import run_train

    root = tmp_path_factory.mktemp("bad")
    world, data, corpus, embed, index, _ = world_datastore(root, n_scenes=30, n_test=2, seed=4, clip=CLIP)
    gpt2 = make_random_gpt2(root / "gpt2", read_corpus(corpus)["text"].to_list())
    train_cfg = TrainConfig(model=AdaptorConfig(gpt2_dir=gpt2, k=1, lora_rank=4), steps=2, batch_size=4,
                            warmup_steps=1, gap_correction=False, val_size=4, eval_every=2, checkpoint_every=2)
    train = run_train(train_cfg, data, corpus=corpus, embed=embed, index=index)
    cfg = root / "cap.yaml"
    cfg.write_text(f"clip: {{model: {CLIP}}}\ngenerate: {{decode: {{strategy: greedy, max_new_tokens: 3}}}}\n")
    images = sorted(world.test_images_dir.glob("*.png"))
    return {"root": root, "data": data, "train": Path(train.path), "index": Path(index.path), "cfg": cfg,
            "images": images}


def _caption(b, *extra, checkpoint=None, index=None, config=None):
    return ["caption", *(extra or [b["images"][0]]), "--config", config or b["cfg"], "--data-dir", b["data"],
            "--checkpoint", checkpoint or b["train"], "--index", index or b["index"]]


def test_caption_guidance_nan(built, capsys):
    code, _, err = run_cli(capsys, *_caption(built), "--guidance", "nan")
    error_line(code, err, "--guidance", "not a number")


def test_caption_max_new_tokens_beyond_the_decoder_context(built, tmp_path, capsys):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(f"clip: {{model: {CLIP}}}\ngenerate: {{decode: {{strategy: greedy, max_new_tokens: 2000}}}}\n")
    code, _, err = run_cli(capsys, *_caption(built, config=cfg))
    error_line(code, err, "max_new_tokens = 2000", "positions", "max_new_tokens <=")


def test_caption_decompression_bomb(built, tmp_path, capsys):
    bomb = write_png(tmp_path / "bomb.png", (30_000, 30_000))
    good = built["images"][0]
    code, _, err = run_cli(capsys, *_caption(built, bomb, good))
    line = error_line(code, err, str(bomb), "decompression bomb", "--skip-bad-images")
    assert "embed_images.skip_bad_images" not in line  # caption's own switch, not one it does not read
    code, out, err = run_cli(capsys, *_caption(built, bomb, good), "--skip-bad-images")
    assert code == 0, err
    assert out.startswith(f"{good}\t") and str(bomb) not in out  # (a random decoder's caption may hold any character)
    assert f"skipped {bomb}" in err


@pytest.mark.parametrize("stage, name", [("train", "adaptor.safetensors"), ("index", "index.faiss"),
                                         ("index", "texts.parquet")])
def test_same_size_damaged_artifact_file(built, tmp_path, capsys, stage, name):
    copy = tmp_path / stage
    shutil.copytree(built[stage], copy)
    target = copy / name
    raw = bytearray(target.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 64] = bytes((b + 1) % 256 for b in raw[mid:mid + 64])
    target.write_bytes(bytes(raw))
    kw = {"checkpoint": copy} if stage == "train" else {"index": copy}
    code, _, err = run_cli(capsys, *_caption(built, **kw))
    error_line(code, err, str(target), "sha256 differs", f"tomcap {stage} --force")
