"""`tomcap corpus` end to end through main(argv): output, --json, caching, configs and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tomcap.cli.main import main
from tomcap.settings import load_pipeline_config

FIX = Path(__file__).parent / "fixtures" / "corpus"


def _corpus_dirs(data: Path) -> list[Path]:
    stage = data / "artifacts" / "corpus"
    return [p for p in stage.iterdir()] if stage.exists() else []


def test_corpus_json_then_cached(tmp_path, capsys):
    args = ["corpus", "--source", str(FIX / "coco_karpathy_test_slice.json"), "--data-dir", str(tmp_path), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["cached"] is False and first["stage"] == "corpus" and first["rows"]["rows_out"] > 0
    manifest = Path(first["path"]) / "manifest.json"
    mtime = manifest.stat().st_mtime_ns
    assert main(args) == 0
    out = capsys.readouterr().out
    second = json.loads(out.strip().splitlines()[-1])
    assert second["cached"] is True and second["path"] == first["path"] and "cached" in out.splitlines()[0]
    assert manifest.stat().st_mtime_ns == mtime


def test_yaml_config_relative_paths(tmp_path, capsys):
    (tmp_path / "caps").mkdir()
    (tmp_path / "caps" / "c.txt").write_text("a red circle here\na blue square there\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data_dir: out\ncorpus:\n  sources:\n    - path: caps/c.txt\n      name: mine\n"
                   "  filters:\n    min_words: 2\n")
    loaded = load_pipeline_config(cfg)
    assert loaded.corpus.sources[0].path == (tmp_path / "caps" / "c.txt").resolve()
    assert main(["corpus", "--config", str(cfg), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["path"].startswith(str((tmp_path / "out").resolve()))
    assert payload["rows"]["per_source"]["mine"]["rows_out"] == 2


def _write(tmp_path: Path, name: str, content: str) -> Path:
    p = tmp_path / name
    p.write_text(content)
    return p


BAD_SOURCES = {
    "missing": (None, "not found"),
    "empty.json": ("", "is empty"),
    "broken.json": ('{"annotations": [', "invalid JSON"),
    "shape.json": ('{"foo": 1}', "unknown shape"),
    "cols.tsv": ("a caption\thttp://x\textra\n", "column"),
    "nocol.csv": ("text,url\na red circle here,x\n", "no column 'caption'"),
    "filtered.txt": ("hi\nok\n", "empty after filtering"),
}


@pytest.mark.parametrize("name", sorted(BAD_SOURCES))
def test_bad_sources(tmp_path, capsys, name):
    content, needle = BAD_SOURCES[name]
    path = tmp_path / name if content is None else _write(tmp_path, name, content)
    data = tmp_path / "data"
    assert main(["corpus", "--source", str(path), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(path) in err and "Fix:" in err
    assert _corpus_dirs(data) == []


@pytest.mark.parametrize("second_row", ["another caption here\thttp://y\tz", "a row without its url"])
def test_tsv_bad_row_later_in_file(tmp_path, capsys, second_row):
    path = _write(tmp_path, "late.tsv", f"a red circle here\thttp://x\n{second_row}\n")
    assert main(["corpus", "--source", str(path), "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Fix:" in err
    assert _corpus_dirs(tmp_path / "d") == []


@pytest.mark.parametrize("yaml_text,needles", [
    ("corpus:\n  sourcez: []\n", ["unknown key 'corpus.sourcez'", "Fix:"]),
    ("corpus:\n  filters:\n    min_words: 5\n    max_words: 2\n",
     ["corpus.filters", "max_words (2) must be >= min_words (5)"]),
    ("corpus:\n  shard_rows: zero\n", ["corpus.shard_rows", "'zero'"]),
    ("- not\n- a mapping\n", ["expected a mapping"]),
    ("corpus: [unclosed\n", ["not valid YAML"]),
])
def test_bad_configs(tmp_path, capsys, yaml_text, needles):
    cfg = _write(tmp_path, "bad.yaml", yaml_text)
    assert main(["corpus", "--config", str(cfg), "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err
    for needle in needles:
        assert needle in err
    assert _corpus_dirs(tmp_path / "d") == []


def test_no_sources_is_a_clear_error(tmp_path, capsys):
    assert main(["corpus", "--data-dir", str(tmp_path)]) == 2
    assert "no sources" in capsys.readouterr().err
