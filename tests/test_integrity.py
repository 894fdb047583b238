"""Integrity: an artifact file that no longer matches its manifest is never used, and `tomcap verify` lists it.

Same-size edits are the hard case (sizes are checked on every read); the sha256 of every file is checked the
first time a process uses an artifact, and again whenever a file's size, mtime or inode changes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tomcap.artifacts import ArtifactStore, DamagedArtifactError, load_ref, verify_artifact
from tomcap.cli.main import main
from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
from tomcap.embed import EmbedConfig, run_embed
from tomcap.index import IndexConfig, run_index

SLICE = Path(__file__).parent / "fixtures" / "embed" / "karpathy_slice.json"
REPO = Path(__file__).resolve().parents[1]
CLIP = "tomcap-test-tiny"


def overwrite_same_size(path: Path, offset_from_end: int, n_bytes: int, keep_mtime: bool = False) -> None:
    """Replace ``n_bytes`` of a file with other bytes, keeping its size (and, optionally, its mtime)."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size - offset_from_end)
        old = f.read(n_bytes)
        f.seek(st.st_size - offset_from_end)
        f.write(bytes((b + 1) % 256 for b in old))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def _config_yaml(tmp: Path, src: Path) -> Path:
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"corpus: {{sources: [{{path: {src}}}]}}\nclip: {{model: {CLIP}}}\n"
                   "embed: {dtype: float32, shard_rows: 100}\nindex: {eval_queries: 8}\n")
    return cfg


@pytest.fixture()
def built(tmp_path):
    src = tmp_path / "caps.json"
    src.write_text(SLICE.read_text())
    data = tmp_path / "data"
    cfg = _config_yaml(tmp_path, src)
    corpus = run_corpus(CorpusConfig(sources=[SourceConfig(path=src)]), data)
    embed = run_embed(EmbedConfig(model=CLIP, dtype="float32", shard_rows=100), data, corpus)
    return cfg, data, corpus, embed


def _error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_same_size_edit_of_an_embedding_shard_is_refused_then_rebuilt_with_force(built, capsys):
    cfg, data, corpus, embed = built
    shard = embed.dir / json.loads((embed.dir / "manifest.json").read_text())["info"]["shards"][0]
    row_bytes = 32 * 4
    overwrite_same_size(shard, offset_from_end=100 * row_bytes, n_bytes=100 * row_bytes)  # 100 rows
    # The library: reuse of the damaged artifact, and any read of it, raise naming the file.
    with pytest.raises(DamagedArtifactError, match=rf"{shard.name}.*sha256 differs.*tomcap embed --force"):
        run_embed(EmbedConfig(model=CLIP, dtype="float32", shard_rows=100), data, corpus)
    with pytest.raises(DamagedArtifactError, match=shard.name):
        run_index(IndexConfig(eval_queries=8), data, embed=embed, corpus=corpus)
    assert not (data / "artifacts" / "index").exists() or not ArtifactStore(data).folders("index")
    # The CLI: exit 2, one line naming the file and the fix; no index built on it.
    assert main(["index", "--config", str(cfg), "--data-dir", str(data)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(shard) in line and "--force" in line
    assert not ArtifactStore(data).folders("index")
    # The fix the message names.
    assert main(["embed", "--config", str(cfg), "--data-dir", str(data), "--force"]) == 0
    assert main(["index", "--config", str(cfg), "--data-dir", str(data)]) == 0
    capsys.readouterr()
    verify_artifact(embed.dir, recheck=True)


@pytest.mark.parametrize("target", ["manifest", "ids", "missing"])
def test_other_damage_is_named(built, target):
    _, data, corpus, embed = built
    if target == "manifest":
        m = json.loads((embed.dir / "manifest.json").read_text())
        first = sorted(m["files"])[0]
        m["files"][first]["sha256"] = "0" * 64  # an edit that keeps the JSON valid
        (embed.dir / "manifest.json").write_text(json.dumps(m))
        needle = "manifest.json was edited"
    elif target == "ids":
        overwrite_same_size(embed.dir / "caption_ids.parquet", offset_from_end=200, n_bytes=8)
        needle = "caption_ids.parquet"
    else:
        (embed.dir / "caption_ids.parquet").unlink()
        needle = "caption_ids.parquet.*missing"
    with pytest.raises(DamagedArtifactError, match=needle):
        load_ref(embed.dir)


def test_verify_command_lists_damaged_artifacts(built, capsys):
    cfg, data, corpus, embed = built
    assert main(["verify", "--data-dir", str(data)]) == 0
    assert "2 artifact(s) ok, 0 damaged" in capsys.readouterr().out
    target = corpus.dir / json.loads((corpus.dir / "manifest.json").read_text())["info"]["shards"][0]
    overwrite_same_size(target, offset_from_end=300, n_bytes=4, keep_mtime=True)
    assert main(["verify", "--data-dir", str(data)]) == 2
    out = capsys.readouterr().out
    assert f"DAMAGED {target}" in out and "tomcap corpus --force" in out and "1 artifact(s) ok, 1 damaged" in out


def test_a_new_process_hashes_even_when_size_and_mtime_are_kept(built):
    """The per-process memo trusts (size, mtime, inode); a new process hashes, so a sneaky edit is still caught."""
    _, data, corpus, embed = built
    shard = embed.dir / "emb-00000.npy"
    overwrite_same_size(shard, offset_from_end=64, n_bytes=16, keep_mtime=True)
    script = ("import sys; from tomcap.embed import EmbeddingSet; EmbeddingSet.open(sys.argv[1])")
    proc = subprocess.run([sys.executable, "-c", script, str(embed.dir)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "DamagedArtifactError" in proc.stderr and "emb-00000.npy" in proc.stderr


def test_default_search_names_the_damaged_artifact_it_skips(built, caplog):
    _, data, corpus, embed = built
    store = ArtifactStore(data)
    overwrite_same_size(embed.dir / "emb-00000.npy", offset_from_end=64, n_bytes=16)
    with pytest.raises(Exception, match=r"no suitable 'embed' artifact; skipped 1 damaged.*emb-00000.npy"):
        store.newest("embed", lambda m: True, fix="rebuild it")
    other = run_embed(EmbedConfig(model=CLIP, dtype="float32", shard_rows=100, init_seed=1), data, corpus)
    assert store.newest("embed", lambda m: True, fix="-").key == other.key
    assert store.newest("embed", lambda m: m.key == other.key, fix="-").key == other.key
    caplog.clear()
    # Newest first: make the damaged one the newest and check the warning names it while the other is used.
    damaged = Path(embed.path) / "manifest.json"  # (embed.dir would verify, and refuse)
    m = json.loads(damaged.read_text())
    m["created_at"] = "2999-01-01T00:00:00+00:00"
    damaged.write_text(json.dumps(m))
    with caplog.at_level("WARNING"):
        assert store.newest("embed", lambda m: True, fix="-").key == other.key
    assert "emb-00000.npy" in caplog.text


def test_first_use_hashes_then_a_stat_suffices(built, monkeypatch):
    _, data, corpus, embed = built
    import tomcap.manifest as art  # where the hashes are taken and remembered

    calls = []
    real = art.file_sha256
    monkeypatch.setattr(art, "file_sha256", lambda p: calls.append(p) or real(p))
    art._verified.clear()
    load_ref(embed.dir)
    n_files = len(json.loads((embed.dir / "manifest.json").read_text())["files"])
    assert len(calls) == n_files
    load_ref(embed.dir)
    assert len(calls) == n_files  # memo: same size, mtime, inode
    arr = np.load(embed.dir / "emb-00000.npy")
    np.save(embed.dir / "emb-00000.npy", arr)  # rewritten: same bytes, new mtime -> that file hashed again, valid
    load_ref(embed.dir)
    assert len(calls) == n_files + 1 and calls[-1].name == "emb-00000.npy"
    index = run_index(IndexConfig(eval_queries=8), data, embed=embed, corpus=corpus)
    calls.clear()
    art._verified.clear()
    load_ref(embed.dir)
    load_ref(index.dir)  # its shards are hard links to the embedding shards: not hashed twice
    shards = json.loads((embed.dir / "manifest.json").read_text())["info"]["shards"]
    assert sorted(p.name for p in calls if p.name in shards) == sorted(shards)


def test_input_files_are_hashed_once_per_version(tmp_path, monkeypatch):
    """Stage keys are asked for several times per task run (cache policy, run name, the stage): an input file is
    read once; a rewritten one (new mtime) is read again; artifact verification never takes the memo."""
    import os

    from tomcap import manifest

    reads = []
    real = manifest.file_sha256
    monkeypatch.setattr(manifest, "file_sha256", lambda p: reads.append(p) or real(p))
    f = tmp_path / "corpus.jsonl"
    f.write_text("a\n")
    first = manifest.input_sha256(f)
    assert manifest.input_sha256(f) == first and len(reads) == 1
    f.write_text("b\n")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # a clearly newer mtime
    assert manifest.input_sha256(f) != first and len(reads) == 2
