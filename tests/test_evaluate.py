"""Evaluation stage: scorers equal to stock pycocoevalcap, every input format, CLI and bad input."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec, load_ref
from tomcap.cli.main import main
from tomcap.config import StageConfig
from tomcap.evaluate import EvalItem, EvaluateConfig, align, load_references, load_results, run_evaluate, score_items
from tomcap.evaluate.java import ptb_tokenize
from tomcap.evaluate.ngrams import RefGroups, RefIndex, bleu, cider, encode
from tomcap.evaluate.rouge import lcs_lengths, rouge_l

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
SLICE = FIXTURES / "magic_slice.json"
NEEDS_JAVA = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed (make java)")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return json.loads(SLICE.read_text())


@pytest.fixture(scope="module")
def tokenized(records):
    """(gts, res) dicts as the COCO toolkit's scorers take them, tokenised by our PTB wrapper."""
    raw = [c for r in records for c in r["captions"]] + [r["prediction"] for r in records]
    tok = ptb_tokenize(raw) if shutil.which("java") else [s.lower() for s in raw]
    gts, res, i = {}, {}, 0
    for r in records:
        gts[r["image_name"]] = tok[i:i + len(r["captions"])]
        i += len(r["captions"])
    for r in records:
        res[r["image_name"]] = [tok[i]]
        i += 1
    return gts, res


def _ours(gts: dict, res: dict):
    keys = list(res)
    refs = [gts[k] for k in keys]
    sizes = np.array([len(r) for r in refs])
    tables = encode([s for r in refs for s in r] + [res[k][0] for k in keys])
    index = RefIndex(tables, RefGroups(start=np.cumsum(sizes) - sizes, size=sizes))
    images, hyp_sent = np.arange(len(keys)), np.arange(len(keys)) + int(sizes.sum())
    return index, images, hyp_sent, refs, [res[k][0] for k in keys]


def test_bleu_cider_rouge_bit_identical_to_stock(tokenized):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = tokenized
    index, images, hyp_sent, refs, hyps = _ours(gts, res)
    b, b_per, stats = bleu(index, images, hyp_sent)
    sb, sb_per = Bleu(4).compute_score(gts, res, verbose=0)
    assert b == sb and b_per == sb_per
    c, c_per = cider(index, images, hyp_sent)
    sc, sc_per = Cider().compute_score(gts, res)
    assert c == sc and np.array_equal(c_per, sc_per)
    r, r_per = rouge_l(hyps, refs)
    sr, sr_per = Rouge().compute_score(gts, res)
    assert r == sr and np.array_equal(r_per, sr_per)
    assert stats["testlen"] == sum(len(h.split()) for h in hyps)


def test_edge_captions_match_stock():
    """Empty, repeated-word, one-word and > 64-token captions (the ROUGE fallback) score as stock."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    long = " ".join(f"w{i % 7}" for i in range(90))
    gts = {"a": ["a a a", "a dog runs", ""], "b": ["the cat", "a cat on a mat"], "c": [long, "w1 w2 w3"],
           "d": ["x y z", "x x x x"]}
    res = {"a": ["a a a a"], "b": [""], "c": [long[:150]], "d": ["x"]}
    index, images, hyp_sent, refs, hyps = _ours(gts, res)
    assert bleu(index, images, hyp_sent)[:2] == Bleu(4).compute_score(gts, res, verbose=0)
    c, c_per = cider(index, images, hyp_sent)
    sc, sc_per = Cider().compute_score(gts, res)
    assert c == sc and np.array_equal(c_per, sc_per)
    r, r_per = rouge_l(hyps, refs)
    sr, sr_per = Rouge().compute_score(gts, res)
    assert r == sr and np.array_equal(r_per, sr_per)


def test_lcs_matches_dynamic_programming():
    from pycocoevalcap.rouge.rouge import my_lcs

    rng = np.random.default_rng(0)
    hyps = [[str(t) for t in rng.integers(0, 5, rng.integers(1, 70))] for _ in range(200)]
    refs = [[str(t) for t in rng.integers(0, 5, rng.integers(1, 30))] for _ in range(200)]
    assert lcs_lengths(hyps, refs).tolist() == [my_lcs(r, h) for h, r in zip(hyps, refs)]


@NEEDS_JAVA
def test_tokenizer_matches_stock(records):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    caps = {r["image_name"]: [{"caption": c} for c in r["captions"]] for r in records}
    stock = PTBTokenizer().tokenize(caps)
    ours = ptb_tokenize([c for r in records for c in r["captions"]])
    assert [c for r in records for c in stock[r["image_name"]]] == ours
    # a line break inside a caption must not shift the captions after it
    assert ptb_tokenize(["A man\rrides.", "", "Two dogs!"]) == ["a man rides", "", "two dogs"]


@pytest.mark.slow
@NEEDS_JAVA
def test_meteor_matches_stock_on_slice(records, tokenized, tmp_path, monkeypatch):
    """Our warm METEOR returns stock Meteor's numbers in each of its set-ups: the full paraphrase
    table (first run against new references), full table plus a process joining on the filtered
    copy (second run: builds the copy) and the filtered copy alone (later runs)."""
    gts, res = tokenized
    res_keys, ref_keys, raw_refs, hyps = align(load_results(SLICE), None)
    items = [EvalItem("slice", res_keys, ref_keys, raw_refs, hyps)]
    first = score_items(items, spice=False, cache_dir=tmp_path, meteor_workers=2)[0]
    assert (first.timings["meteor_table_cached"], first.timings["meteor_table_built"]) == (0.0, 0.0)
    assert not list(tmp_path.glob("paraphrase-*.gz")) and len(list(tmp_path.glob("seen-*"))) == 1
    second = score_items(items, spice=False, cache_dir=tmp_path, meteor_workers=2)[0]
    assert (second.timings["meteor_table_cached"], second.timings["meteor_table_built"]) == (0.0, 1.0)
    assert len(list(tmp_path.glob("paraphrase-*.gz"))) == 1 and not list(tmp_path.glob(".tmp-*"))
    third = score_items(items, spice=False, cache_dir=tmp_path, meteor_workers=2)[0]
    assert third.timings["meteor_table_cached"] == 1.0 and third.timings["meteor_processes"] == 2.0
    from pycocoevalcap.meteor.meteor import Meteor

    stock = Meteor()
    try:
        m, m_per = stock.compute_score(gts, res)
    finally:
        del stock
    # one process (a demo worker pinned to its core): the first run builds the copy and scores on it alone
    one = tmp_path / "one"
    alone = [score_items(items, spice=False, cache_dir=one, meteor_workers=1)[0] for _ in range(2)]
    assert [(o.timings["meteor_table_cached"], o.timings.get("meteor_table_built", 0.0)) for o in alone] == [
        (0.0, 1.0), (1.0, 0.0)]
    assert [o.timings["meteor_processes"] for o in alone] == [1.0, 1.0]
    assert len(list(one.glob("paraphrase-*.gz"))) == 1 and not list(one.glob(".tmp-*"))
    # a relative cache dir (`--data-dir data`): the jar runs in its own folder, so the copy must be named absolutely
    monkeypatch.chdir(tmp_path)
    relative = [score_items(items, spice=False, cache_dir=Path("rel"), meteor_workers=1)[0] for _ in range(2)]
    assert [o.timings["meteor_table_cached"] for o in relative] == [0.0, 1.0]
    for o in (first, second, third, *alone, *relative):
        assert o.metrics["METEOR"] == m
        assert o.per_image["METEOR"].tolist() == m_per


# ---------------------------------------------------------------- formats: one code path after loading

def _write_coco(records: list[dict], folder: Path) -> tuple[Path, Path]:
    """The paired slice as a COCO annotation file plus a COCO results file with integer ids."""
    images, anns, results = [], [], []
    for i, r in enumerate(records):
        img_id = int(r["image_name"].rsplit("_", 1)[1].split(".")[0])
        images.append({"id": img_id, "file_name": r["image_name"]})
        anns += [{"image_id": img_id, "id": len(anns) + j, "caption": c} for j, c in enumerate(r["captions"])]
        results.append({"image_id": img_id, "caption": r["prediction"]})
    refs, res = folder / "captions.json", folder / "results.json"
    refs.write_text(json.dumps({"images": images, "annotations": anns}))
    res.write_text(json.dumps(results))
    return refs, res


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@NEEDS_JAVA
def test_paired_coco_nocaps_parquet_give_same_scores(records, tmp_path):
    base = ["--no-meteor", "--no-spice"]
    assert main(["evaluate", "--results", str(SLICE), "--out", str(tmp_path / "paired"), *base]) == 0
    paired = _metrics(tmp_path / "paired")
    refs, res = _write_coco(records, tmp_path)
    assert main(["evaluate", "--refs", str(refs), "--results", str(res), "--out", str(tmp_path / "coco"), *base]) == 0
    assert _metrics(tmp_path / "coco") == paired
    nocaps = tmp_path / "nocaps.json"
    nocaps.write_text(json.dumps([{"image_id": r["image_name"], "caption": r["captions"]} for r in records]))
    pq = tmp_path / "refs.parquet"
    pl.DataFrame({"image_id": [r["image_name"] for r in records for _ in r["captions"]],
                  "caption": [c for r in records for c in r["captions"]]}).write_parquet(pq)
    for name, ref_file in (("nocaps", nocaps), ("parquet", pq)):
        # integer result ids resolve to the file names' COCO ids
        assert main(["evaluate", "--refs", str(ref_file), "--results", str(res), "--out", str(tmp_path / name),
                     *base]) == 0
        assert _metrics(tmp_path / name) == paired
    assert paired["n_images"] == len(records)
    assert set(paired) >= {"Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "bleu_stats", "n_images"}
    assert "SPICE" not in paired and "METEOR" not in paired
    per = pl.read_parquet(tmp_path / "paired" / "per_image.parquet")
    assert per.height == len(records) and per["CIDEr"].mean() == pytest.approx(paired["CIDEr"])
    report = (tmp_path / "paired" / "report.md").read_text()
    assert "Best" in report and "Worst" in report and "ref:" in report
    ref = load_ref(tmp_path / "paired", stage="evaluate")
    assert set(ref.manifest().files) == {"metrics.json", "per_image.parquet", "report.md"}


@NEEDS_JAVA
def test_sweep_and_generation_artifact(records, tmp_path):
    refs, res = _write_coco(records, tmp_path)
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps([{"image_id": r["image_id"],
                                  "caption": "a picture"} for r in json.loads(res.read_text())]))

    class GenConfig(StageConfig):
        n: int = 1

    def build(tmp: Path) -> BuildOutput:
        shutil.copy(res, tmp / "results.json")
        return BuildOutput()

    gen = ArtifactStore(tmp_path / "data").build(StageSpec("generate", "test"), GenConfig(), {}, build)
    cfg = EvaluateConfig(refs=refs, results=[worse], meteor=False, spice=False)
    ref = run_evaluate(cfg, tmp_path / "data", generate=gen)
    sweep = json.loads((ref.dir / "sweep.json").read_text())
    assert len(sweep) == 2
    by_name = {v["name"]: v["metrics"] for v in sweep.values()}
    assert by_name[gen.dir.name]["CIDEr"] > by_name["worse"]["CIDEr"]
    assert all((ref.dir / d / "metrics.json").is_file() for d in sweep)
    assert run_evaluate(cfg, tmp_path / "data", generate=gen).cached  # same inputs -> same artifact
    # a generation artifact folder is also accepted on the command line
    assert main(["evaluate", "--refs", str(refs), "--results", str(gen.dir), "--out", str(tmp_path / "o"),
                 "--no-meteor"]) == 0
    assert _metrics(tmp_path / "o") == by_name[gen.dir.name]
    # a quoted glob scores every matching file as one sweep
    assert main(["evaluate", "--refs", str(refs), "--results", str(tmp_path / "[rw]*.json"), "--out",
                 str(tmp_path / "g"), "--no-meteor"]) == 0
    assert {v["name"] for v in json.loads((tmp_path / "g" / "sweep.json").read_text()).values()} == {"results", "worse"}
    assert "| results |" in (tmp_path / "g" / "report.md").read_text()


@NEEDS_JAVA
def test_coco_val2017_degenerate_results(shared_captions, tmp_path):
    folder = shared_captions / "coco_val2017_example"
    out = tmp_path / "val2017"
    assert main(["evaluate", "--refs", str(folder / "captions_val2017.json"), "--results",
                 str(folder / "captions_val2017_fakecap_results.json"), "--out", str(out), "--no-meteor"]) == 0
    m = _metrics(out)
    assert m["n_images"] == 4989
    assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
    assert 0 <= m["CIDEr"] < 0.05


# ---------------------------------------------------------------- bad input

def _bad(tmp_path: Path, capsys, payload, *, refs=None, expect: str) -> None:
    res = tmp_path / "bad.json"
    res.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    out = tmp_path / "out"
    argv = ["evaluate", "--results", str(res), "--out", str(out), "--no-meteor"]
    if refs is not None:
        argv += ["--refs", str(refs)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expect in err and "Fix:" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("payload, expect", [
    ({"image_id": 1, "caption": "x"}, "must be a JSON list"),
    ([], "results are empty"),
    ([{"image_id": 391895, "caption": "a"}, {"image_id": 391895, "caption": "b"}],
     "duplicate result for image id 391895"),
    ([{"image_id": 999999999, "caption": "a"}], "have no reference: 999999999"),
])
def test_bad_results(payload, expect, tmp_path, capsys, records):
    refs, _ = _write_coco(records, tmp_path)
    _bad(tmp_path, capsys, payload, refs=refs, expect=expect)


def test_refs_of_unknown_shape(tmp_path, capsys):
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"foo": [1, 2]}))
    _bad(tmp_path, capsys, [{"image_id": 1, "caption": "a"}], refs=refs, expect="references of an unknown shape")


def test_paired_file_without_prediction(tmp_path, capsys, records):
    recs = [dict(r) for r in records[:3]]
    del recs[1]["prediction"]
    _bad(tmp_path, capsys, recs, expect="record 1 has no 'prediction'")


def test_missing_java_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    _bad(tmp_path, capsys, json.loads(SLICE.read_text())[:2], expect="apt-get install -y default-jre-headless")


def test_loading_aliases_and_errors(records, tmp_path):
    refs = load_references(SLICE)
    assert refs.resolve("391895") == "COCO_val2014_000000391895.jpg"
    res = load_results(SLICE)
    keys, ref_keys, gts, hyps = align(res, None)
    assert keys == ref_keys and len(gts) == len(hyps) == len(records)
    with pytest.raises(Exception, match="name the same reference image"):
        p = tmp_path / "r.json"
        p.write_text(json.dumps([{"image_id": 391895, "caption": "a"},
                                 {"image_id": "COCO_val2014_000000391895.jpg", "caption": "b"}]))
        align(load_results(p), refs)
