"""Every corpus format reads into the same columns; auto-detection and explicit override agree."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tomcap.corpus import CorpusConfig, SourceConfig, build_corpus_frame, detect_format, read_corpus, run_corpus

FIX = Path(__file__).parent / "fixtures" / "corpus"
CAPS = ["a red circle on the left", "two blue squares above a tree", "a small green star in the corner"]


def _frame(tmp_path: Path, path: Path, **src) -> pl.DataFrame:
    df, _ = build_corpus_frame(CorpusConfig(sources=[SourceConfig(path=path, **src)]))
    return df


def test_coco_annotations(tmp_path):
    p = tmp_path / "caps.json"
    p.write_text(json.dumps({"images": [], "annotations": [{"image_id": i, "id": i, "caption": c}
                                                           for i, c in enumerate(CAPS)]}))
    assert detect_format(p) == "coco"
    df = _frame(tmp_path, p)
    assert df["text"].to_list() == CAPS
    assert df["image_id"].to_list() == ["0", "1", "2"]


def test_karpathy_real_slice():
    recs = json.loads((FIX / "coco_karpathy_test_slice.json").read_text())
    df = _frame(Path("."), FIX / "coco_karpathy_test_slice.json")
    assert detect_format(FIX / "coco_karpathy_test_slice.json") == "karpathy"
    first = recs[0]
    rows = df.filter(pl.col("image_id") == first["image_name"])
    assert set(rows["text"].to_list()) <= {" ".join(c.split()) for c in first["captions"]}
    assert rows["split"].unique().to_list() == ["test"]


def test_nocaps_list_and_single(tmp_path):
    df = _frame(tmp_path, FIX / "nocaps_val_slice.json")
    recs = json.loads((FIX / "nocaps_val_slice.json").read_text())
    assert detect_format(FIX / "nocaps_val_slice.json") == "nocaps"
    assert df.height == len({" ".join(c.split()) for r in recs for c in r["caption"]})
    p = tmp_path / "single.json"
    p.write_text(json.dumps([{"image_id": "x.jpg", "caption": CAPS[0], "split": "val"}]))
    assert _frame(tmp_path, p).select("image_id", "split").row(0) == ("x.jpg", "val")


def test_cc3m_tsv_real_slice():
    df = _frame(Path("."), FIX / "cc3m_val_slice.tsv")
    lines = (FIX / "cc3m_val_slice.tsv").read_text().splitlines()
    assert df["text"][0] == " ".join(lines[0].split("\t")[0].split())
    assert df["image_id"].null_count() == df.height


def test_csv_jsonl_parquet_with_configured_column(tmp_path):
    frame = pl.DataFrame({"sentence": CAPS, "img": ["a", "b", "c"]})
    frame.write_csv(tmp_path / "c.csv")
    frame.write_ndjson(tmp_path / "c.jsonl")
    frame.write_parquet(tmp_path / "c.parquet")
    for name in ("c.csv", "c.jsonl", "c.parquet"):
        df = _frame(tmp_path, tmp_path / name, caption_column="sentence", image_id_column="img")
        assert df["text"].to_list() == CAPS, name
        assert df["image_id"].to_list() == ["a", "b", "c"], name


def test_plain_text_and_format_override(tmp_path):
    p = tmp_path / "captions.dat"
    p.write_text("\n".join(CAPS) + "\n")
    df = _frame(tmp_path, p, format="text")
    assert df["text"].to_list() == CAPS


def test_several_sources_tagged(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(CAPS[0] + "\n")
    b.write_text(CAPS[1] + "\n")
    ref = run_corpus(CorpusConfig(sources=[SourceConfig(path=a, name="first"), SourceConfig(path=b, split="val")]),
                     tmp_path / "data")
    df = read_corpus(ref)
    assert df.select("source", "split").rows() == [("first", None), ("b", "val")]


def test_all_shared_formats_in_one_config(shared_captions, tmp_path):
    files = [shared_captions / "karpathy" / "coco_karpathy_test.json",
             shared_captions / "coco_val2017_example" / "captions_val2017.json",
             shared_captions / "nocaps" / "nocaps_val_corpus_viecap.json",
             shared_captions / "cc3m" / "Validation_GCC-1.1.0-Validation.tsv"]
    ref = run_corpus(CorpusConfig(sources=[SourceConfig(path=f) for f in files]), tmp_path)
    per_source = ref.manifest().rows["per_source"]
    assert {c["format"] for c in per_source.values()} == {"karpathy", "coco", "nocaps", "cc3m_tsv"}
    df = read_corpus(ref)
    assert df.height == ref.manifest().rows["rows_out"] == sum(c["rows_out"] for c in per_source.values())
    assert df["caption_id"].n_unique() == df.height
    assert set(df["source"].unique()) == {f.stem for f in files}


@pytest.mark.parametrize("shard_rows", [7, 1000])
def test_shards(tmp_path, shard_rows):
    ref = run_corpus(CorpusConfig(sources=[SourceConfig(path=FIX / "coco_karpathy_test_slice.json")],
                                  shard_rows=shard_rows), tmp_path)
    shards = ref.manifest().info["shards"]
    n = ref.manifest().rows["rows_out"]
    assert len(shards) == -(-n // shard_rows)
    assert read_corpus(ref).height == n
