"""The stored (uncompressed-gzip) copy of METEOR's paraphrase table: same bytes, whole or absent."""
from __future__ import annotations

import gzip
import logging
import os
import shutil

import pytest

import tomcap.evaluate.meteor_table as mt

TABLE_TEXT = "".join(f"0.{i:04d}\nphrase {i}\nparaphrase {i}\n" for i in range(2000)).encode()


@pytest.fixture
def table(tmp_path, monkeypatch):
    orig = tmp_path / "data" / "paraphrase-en.gz"
    orig.parent.mkdir()
    orig.write_bytes(gzip.compress(TABLE_TEXT))
    monkeypatch.setattr(mt, "original_table", lambda: orig)
    monkeypatch.setenv("TOMCAP_CACHE_DIR", str(tmp_path / "cache"))
    return orig


def test_stored_copy_has_the_same_lines_uncompressed(table):
    assert mt.stored_copy() is None
    path = mt.write_stored_copy()
    assert mt.stored_copy() == path and path.parent == table.parent.parent / "cache" / "meteor"
    assert os.listdir(table.parent) == [table.name]  # nothing written beside the installed table
    assert str(table.stat().st_size) in path.name  # another release of the table gets another copy
    assert gzip.decompress(path.read_bytes()) == TABLE_TEXT
    assert path.stat().st_size > len(TABLE_TEXT) > table.stat().st_size  # level 0: stored, not deflated
    assert mt.write_stored_copy() == path  # idempotent


def test_an_interrupted_copy_leaves_nothing(table, monkeypatch):
    def broken(src, dst, length=0):
        dst.write(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", broken)
    with pytest.raises(OSError, match="No space"):
        mt.write_stored_copy()
    assert mt.stored_copy() is None and os.listdir(table.parent) == [table.name]
    assert os.listdir(mt.cache_folder()) == []


def test_background_copy_failure_is_a_warning(table, monkeypatch, caplog):
    monkeypatch.setattr(mt, "write_stored_copy", lambda: (_ for _ in ()).throw(PermissionError("read-only")))
    with caplog.at_level(logging.WARNING, logger=mt.__name__):
        mt.StoredCopyBuild().wait()
    assert "read-only" in caplog.text and mt.stored_copy() is None
