"""Filters, their counts, stable ids and seeded sampling."""
from __future__ import annotations

import json
import unicodedata

import polars as pl

from tomcap.corpus import (CorpusConfig, FilterConfig, SourceConfig, build_corpus_frame, caption_id, read_corpus,
                           run_corpus)


def _build(tmp_path, lines, **filters):
    p = tmp_path / "caps.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = CorpusConfig(sources=[SourceConfig(path=p)], filters=FilterConfig(**filters))
    df, counts = build_corpus_frame(cfg)
    return df, counts["caps"]


def test_normalisation_whitespace_and_unicode(tmp_path):
    df, _ = _build(tmp_path, ["  a   \ufb01ne  red\tcircle  ", "a fine red circle"])
    # NFKC turns the ligature into "fi"; whitespace runs collapse; the two lines become one.
    assert df["text"].to_list() == ["a fine red circle"]


def test_lowercase_option(tmp_path):
    df, _ = _build(tmp_path, ["A Red Circle here", "a red circle here"], lowercase=True)
    assert df["text"].to_list() == ["a red circle here"]
    df, _ = _build(tmp_path, ["A Red Circle here", "a red circle here"])
    assert df.height == 2


def test_each_filter_reason_counted(tmp_path):
    lines = ["a red circle here", "", "   ", "too short", "one two three four five six seven",
             "bell\x07 in the text", "a red circle here"]
    df, c = _build(tmp_path, lines, min_words=3, max_words=6)
    assert df["text"].to_list() == ["a red circle here"]
    assert (c["empty"], c["too_short"], c["too_long"], c["non_printable"], c["duplicate"]) == (2, 1, 1, 1, 1)
    assert c["rows_in"] == len(lines) and c["rows_out"] == 1


def test_filters_can_be_switched_off(tmp_path):
    lines = ["bell\x07 in text", "dup dup dup", "dup dup dup"]
    df, _ = _build(tmp_path, lines, drop_non_printable=False, dedupe=False)
    assert df.height == 3


def test_cross_source_dedupe_keeps_first_source(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a red circle here\n")
    b.write_text("a red circle here\na blue square there\n")
    df, counts = build_corpus_frame(CorpusConfig(sources=[SourceConfig(path=a), SourceConfig(path=b)]))
    assert df.select("source", "text").rows() == [("a", "a red circle here"), ("b", "a blue square there")]
    assert counts["b"]["duplicate"] == 1 and counts["b"]["rows_out"] == 1


def test_max_rows_sampling_is_seeded_and_ordered(tmp_path):
    lines = [f"caption number {i} here" for i in range(100)]
    p = tmp_path / "caps.txt"
    p.write_text("\n".join(lines))

    def sample(seed):
        cfg = CorpusConfig(sources=[SourceConfig(path=p, max_rows=10)], seed=seed)
        df, counts = build_corpus_frame(cfg)
        assert counts["caps"]["capped"] == 90
        return df["text"].to_list()

    first = sample(0)
    assert len(first) == 10 and first == sample(0) and first != sample(1)
    assert first == sorted(first, key=lines.index)


def test_stable_ids_across_grown_corpus(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("a red circle here\na blue square there\n")
    grown = tmp_path / "grown.txt"
    grown.write_text("a green star above\na red circle here\nx y z w\na blue square there\n")
    ids_small = dict(read_corpus(run_corpus(CorpusConfig(sources=[SourceConfig(path=small)]), tmp_path / "d"))
                     .select("text", "caption_id").iter_rows())
    ids_grown = dict(read_corpus(run_corpus(CorpusConfig(sources=[SourceConfig(path=grown)]), tmp_path / "d"))
                     .select("text", "caption_id").iter_rows())
    assert all(ids_grown[t] == i for t, i in ids_small.items())
    assert ids_grown["a green star above"] == caption_id("a green star above")


def test_karpathy_test_rows_equal_distinct_normalised_captions(shared_captions, tmp_path):
    """Acceptance: row count == distinct normalised captions passing the defaults (computed independently)."""
    path = shared_captions / "karpathy" / "coco_karpathy_test.json"
    defaults = FilterConfig()
    expected = set()
    for rec in json.loads(path.read_text()):
        for cap in rec["captions"]:
            text = " ".join(unicodedata.normalize("NFKC", cap).split())
            printable = all(unicodedata.category(ch)[0] != "C" or ch == " " for ch in text)
            if text and printable and defaults.min_words <= len(text.split()) <= defaults.max_words:
                expected.add(text)
    ref = run_corpus(CorpusConfig(sources=[SourceConfig(path=path)]), tmp_path)
    df = read_corpus(ref)
    assert df.height == len(expected) == ref.manifest().rows["rows_out"]
    assert set(df["text"].to_list()) == expected
    assert df.schema["image_id"] == pl.String
