"""Artifact store: keys, reuse, atomic writes, untrusted folders, stage isolation of config changes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec, read_manifest, stage_key
from tomcap.config import StageConfig
from tomcap.constants import MANIFEST_NAME, TMP_PREFIX
from tomcap.corpus import CorpusConfig, FilterConfig, SourceConfig, run_corpus
from tomcap.errors import ArtifactError

REPO = Path(__file__).resolve().parents[1]


class _Cfg(StageConfig):
    value: int = 1


def _writer(payload: str, calls: list):
    def build(tmp: Path) -> BuildOutput:
        calls.append(1)
        (tmp / "out.txt").write_text(payload)
        return BuildOutput(rows={"n": 1})
    return build


def test_reuse_same_folder_without_rewrite(tmp_path):
    store, spec, calls = ArtifactStore(tmp_path), StageSpec("demo", "1"), []
    ref = store.build(spec, _Cfg(), {"up": "abc"}, _writer("x", calls))
    mtime = (ref.dir / MANIFEST_NAME).stat().st_mtime_ns
    again = store.build(spec, _Cfg(), {"up": "abc"}, _writer("x", calls))
    assert (again.path, again.cached, ref.cached) == (ref.path, True, False)
    assert calls == [1] and (ref.dir / MANIFEST_NAME).stat().st_mtime_ns == mtime
    m = read_manifest(ref.dir)
    assert m.stage == "demo" and m.upstream == {"up": "abc"} and m.rows == {"n": 1}
    assert m.files["out.txt"].size == 1 and "python" in m.versions and m.created_at


def test_key_depends_on_config_upstream_and_version():
    base = stage_key(StageSpec("s", "1"), _Cfg(), {"u": "a"})
    assert base == stage_key(StageSpec("s", "1"), _Cfg(), {"u": "a"})
    assert base != stage_key(StageSpec("s", "2"), _Cfg(), {"u": "a"})
    assert base != stage_key(StageSpec("s", "1"), _Cfg(value=2), {"u": "a"})
    assert base != stage_key(StageSpec("s", "1"), _Cfg(), {"u": "b"})
    assert base != stage_key(StageSpec("t", "1"), _Cfg(), {"u": "a"})


def test_failed_build_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)

    def boom(tmp: Path) -> BuildOutput:
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        store.build(StageSpec("demo", "1"), _Cfg(), {}, boom)
    assert list(store.stage_dir("demo").iterdir()) == []


def test_untrusted_folders_are_rebuilt(tmp_path):
    store, spec, calls = ArtifactStore(tmp_path), StageSpec("demo", "1"), []
    key = stage_key(spec, _Cfg(), {})
    final = store.path_for("demo", key)
    final.mkdir(parents=True)
    (final / "out.txt").write_text("stale half write")  # no manifest: never trusted
    ref = store.build(spec, _Cfg(), {}, _writer("fresh", calls))
    assert calls == [1] and (ref.dir / "out.txt").read_text() == "fresh"
    (ref.dir / "out.txt").write_text("")  # truncated after the fact: damaged, named, rebuilt only when asked
    with pytest.raises(ArtifactError, match="missing or truncated"):
        read_manifest(ref.dir)
    with pytest.raises(ArtifactError, match="out.txt.*--force"):
        store.find("demo", key)
    store.build(spec, _Cfg(), {}, _writer("fresh", calls), force=True)
    assert calls == [1, 1] and store.find("demo", key) is not None


def test_killed_mid_write_leaves_nothing_trusted(tmp_path):
    """A stage SIGKILLed while writing shards: no trusted folder; the rerun completes and cleans up."""
    src = tmp_path / "caps.txt"
    src.write_text("".join(f"caption number {i} here\n" for i in range(50)))
    data = tmp_path / "data"
    script = textwrap.dedent(f"""
        import os, signal
        import polars as pl
        from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
        real = pl.DataFrame.write_parquet
        def write_then_die(self, path, **kw):
            real(self, path, **kw)
            if str(path).endswith("00001.parquet"):
                os.kill(os.getpid(), signal.SIGKILL)
        pl.DataFrame.write_parquet = write_then_die
        run_corpus(CorpusConfig(sources=[SourceConfig(path={str(src)!r})], shard_rows=10), {str(data)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    stage_dir = ArtifactStore(data).stage_dir("corpus")
    leftovers = list(stage_dir.iterdir())
    assert leftovers and all(p.name.startswith(TMP_PREFIX) for p in leftovers)
    cfg = CorpusConfig(sources=[SourceConfig(path=src)], shard_rows=10)
    ref = run_corpus(cfg, data)
    assert not ref.cached and read_manifest(ref.dir).rows["rows_out"] == 50
    assert [p.name for p in stage_dir.iterdir()] == [ref.key]


def test_stage_config_change_touches_only_that_stage(tmp_path):
    """Changing a field used only by stage k rebuilds k and its downstream, nothing upstream."""
    src = tmp_path / "caps.txt"
    src.write_text("a red circle here\na blue square\n")
    store = ArtifactStore(tmp_path / "data")
    down_spec, calls = StageSpec("downstream", "1"), []

    def pipeline(corpus_cfg: CorpusConfig, down_cfg: _Cfg):
        corpus = run_corpus(corpus_cfg, store.data_dir)
        down = store.build(down_spec, down_cfg, {"corpus": corpus.fingerprint}, _writer(corpus.fingerprint, calls))
        return corpus, down

    c1, d1 = pipeline(CorpusConfig(sources=[SourceConfig(path=src)]), _Cfg())
    c2, d2 = pipeline(CorpusConfig(sources=[SourceConfig(path=src)]), _Cfg(value=7))
    assert c2.cached and c2.path == c1.path and not d2.cached and d2.path != d1.path
    c3, d3 = pipeline(CorpusConfig(sources=[SourceConfig(path=src)], filters=FilterConfig(lowercase=True)), _Cfg())
    # The corpus stage reran; its content is identical (already lower-case), so downstream stays cached.
    assert not c3.cached and c3.fingerprint == c1.fingerprint and d3.cached
    c4, d4 = pipeline(CorpusConfig(sources=[SourceConfig(path=src)], filters=FilterConfig(min_words=4)), _Cfg())
    assert not c4.cached and c4.fingerprint != c1.fingerprint and not d4.cached
    assert len(calls) == 3


def test_moving_a_source_file_keeps_the_key(tmp_path):
    a = tmp_path / "a" / "caps.txt"
    a.parent.mkdir()
    a.write_text("a red circle here\n")
    r1 = run_corpus(CorpusConfig(sources=[SourceConfig(path=a)]), tmp_path / "d")
    b = tmp_path / "b" / "caps.txt"
    b.parent.mkdir()
    os.replace(a, b)
    r2 = run_corpus(CorpusConfig(sources=[SourceConfig(path=b)]), tmp_path / "d")
    assert r2.cached and r2.path == r1.path
    b.write_text("a red circle there\n")
    assert not run_corpus(CorpusConfig(sources=[SourceConfig(path=b)]), tmp_path / "d").cached
