"""CorpusWatcher: reports a landed file once it has settled, once per content."""
from __future__ import annotations

import pytest

from tomcap.errors import InputDataError
from tomcap.watch import CorpusWatcher


def test_reports_settled_new_and_changed_files(tmp_path):
    w = CorpusWatcher(tmp_path)
    f = tmp_path / "new.jsonl"
    f.write_text('{"caption": "a red circle here"}\n')
    (tmp_path / ".hidden.json").write_text("{}")
    (tmp_path / "copying.tsv.part").write_text("x")
    (tmp_path / "notes.md").write_text("x")
    assert w.poll() == []  # first sight: maybe still being written
    [(path, digest)] = w.poll()
    assert path == f and len(digest) == 64
    assert w.poll() == []  # unchanged: reported once
    f.write_text('{"caption": "a red circle here"}\n{"caption": "a blue square there"}\n')
    assert w.poll() == []
    assert [p for p, _ in w.poll()] == [f]


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(InputDataError, match="not a directory"):
        CorpusWatcher(tmp_path / "nope")
