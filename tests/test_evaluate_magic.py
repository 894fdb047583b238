"""Acceptance: the MAGIC Karpathy-test file reproduces its owners' pycocoevalcap printout and stock
pycocoevalcap 1.2, number for number (slow: METEOR's jar loads for ~10 s per run)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tomcap.artifacts import load_ref
from tomcap.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")]

MAGIC = "magic_results/magic_mscoco_karpathy_test_result.json"
PUBLISHED = {"Bleu_1": 0.568, "Bleu_2": 0.358, "Bleu_3": 0.214, "Bleu_4": 0.129, "METEOR": 0.174,
             "ROUGE_L": 0.399, "CIDEr": 0.493}
PUBLISHED_BLEU_STATS = {"testlen": 47153, "reflen": 47168, "guess": [47153, 42171, 37189, 32207],
                        "correct": [26801, 9496, 2857, 902]}
"""../shared/data/captions/REFERENCE_SCORES.md section 1 (SPICE aside: its jars are not installed)."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Shared by the runs below: the first marks the references seen, the second builds a METEOR
    table filtered to them, the third runs on that table alone."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def magic_out(shared_captions, tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("magic") / "eval"
    assert main(["evaluate", "--results", str(shared_captions / MAGIC), "--out", str(out),
                 "--data-dir", str(data_dir)]) == 0
    return out


def test_reproduces_published_scores(magic_out):
    m = json.loads((magic_out / "metrics.json").read_text())
    assert m["n_images"] == 4982
    assert m["bleu_stats"] == PUBLISHED_BLEU_STATS
    for k, v in PUBLISHED.items():
        assert round(m[k], 3) == v, k
    assert "SPICE" not in m


def test_identical_to_stock_pycocoevalcap(magic_out, shared_captions):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    records = json.loads((shared_captions / MAGIC).read_text())
    tok = PTBTokenizer()
    gts = tok.tokenize({r["image_name"]: [{"caption": c} for c in r["captions"]] for r in records})
    res = tok.tokenize({r["image_name"]: [{"caption": r["prediction"]}] for r in records})
    ours = json.loads((magic_out / "metrics.json").read_text())
    per = pl.read_parquet(magic_out / "per_image.parquet")
    assert per["image_id"].to_list() == list(res)
    meteor = Meteor()
    for scorer, names in ((Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (meteor, ["METEOR"]),
                          (Rouge(), ["ROUGE_L"]), (Cider(), ["CIDEr"])):
        score, scores = scorer.compute_score(gts, res)
        if len(names) == 1:
            score, scores = [score], [scores]
        for name, s, ss in zip(names, score, scores):
            assert ours[name] == s, name
            assert np.array_equal(per[name].to_numpy(), np.asarray(ss, dtype=np.float64)), name
    del meteor


def test_coco_format_conversion_gives_same_scores(magic_out, shared_captions, tmp_path, data_dir):
    """Also the runs that build and then load the filtered paraphrase table: no score may move."""
    records = json.loads((shared_captions / MAGIC).read_text())
    images, anns, results = [], [], []
    for r in records:
        img_id = int(r["image_name"].rsplit("_", 1)[1].split(".")[0])
        images.append({"id": img_id, "file_name": r["image_name"]})
        anns += [{"image_id": img_id, "id": len(anns), "caption": c} for c in r["captions"]]
        results.append({"image_id": img_id, "caption": r["prediction"]})
    (tmp_path / "refs.json").write_text(json.dumps({"images": images, "annotations": anns}))
    (tmp_path / "res.json").write_text(json.dumps(results))
    cache = data_dir / "cache" / "meteor"
    assert not list(cache.glob("paraphrase-*.gz")) and list(cache.glob("seen-*")), "first run: full table only"
    expected = json.loads((magic_out / "metrics.json").read_text())
    expected_meteor = pl.read_parquet(magic_out / "per_image.parquet")["METEOR"].to_numpy()
    for run, (cached, built) in enumerate(((0.0, 1.0), (1.0, None))):
        out = tmp_path / f"coco{run}"
        assert main(["evaluate", "--refs", str(tmp_path / "refs.json"), "--results", str(tmp_path / "res.json"),
                     "--out", str(out), "--data-dir", str(data_dir)]) == 0
        timings = load_ref(out).manifest().info["timings"]
        assert (timings["meteor_table_cached"], timings.get("meteor_table_built")) == (cached, built)
        assert json.loads((out / "metrics.json").read_text()) == expected
        assert np.array_equal(pl.read_parquet(out / "per_image.parquet")["METEOR"].to_numpy(), expected_meteor)
