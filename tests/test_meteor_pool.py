"""The METEOR pool's scheduling, with stand-in processes (the real jar is covered, against stock
pycocoevalcap, in test_evaluate.py and test_evaluate_magic.py): late joiners, dying processes."""
from __future__ import annotations

import threading
import time

import pytest

import tomcap.evaluate.meteor as meteor
from tomcap.errors import TomcapError


class FakeProcess:
    """Answers a SCORE line with a statistic derived from the line alone, as the jar does."""

    made: list["FakeProcess"] = []
    die_after: dict[object, int] = {}  # table -> chunks answered before dying

    def __init__(self, paraphrase=None, heap=meteor.METEOR_HEAP):
        self.table, self.chunks, self.closed = paraphrase, 0, False
        FakeProcess.made.append(self)

    def exchange(self, lines, n_replies):
        if self.closed:
            raise TomcapError("the METEOR process stopped (exit -9)")
        if self.chunks >= self.die_after.get(self.table, 10**9):
            self.closed = True
            raise TomcapError("the METEOR process stopped (exit 1): OutOfMemoryError")
        self.chunks += 1
        time.sleep(0.005)
        if lines[0].startswith("EVAL"):
            stats = lines[0].split(" ||| ")[1:]
            return [str(float(s)) for s in stats] + [str(sum(float(s) for s in stats))]
        return [str(len(line)) for line in lines]

    def eval_stats(self, stats):
        replies = self.exchange(["EVAL ||| " + " ||| ".join(stats)], len(stats) + 1)
        return float(replies[-1]), [float(r) for r in replies[:-1]]

    def close(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    FakeProcess.made, FakeProcess.die_after = [], {}
    monkeypatch.setattr(meteor, "MeteorProcess", FakeProcess)
    return FakeProcess


def _inputs(n):
    hyps = [f"a dog number {i}" + " x" * (i % 7) for i in range(n)]
    refs = [[f"ref {i}", "another ref"] for i in range(n)]
    expected = [float(len(meteor._score_line(h, r))) for h, r in zip(hyps, refs)]
    return hyps, refs, expected


def test_late_process_joins_and_every_line_is_answered_once(fake):
    hyps, refs, expected = _inputs(40 * meteor.CHUNK_LINES)
    gate = threading.Event()

    def filtered_table():
        gate.wait()
        return "filtered.gz"

    with meteor.MeteorPool(now=[None], later=[filtered_table]) as pool:
        threading.Timer(0.05, gate.set).start()
        total, per = pool.score(hyps, refs)
        assert pool.n_started == 2
    full, late = fake.made
    assert late.table == "filtered.gz" and late.chunks > 0 and full.chunks > 0
    assert full.chunks + late.chunks == 40 + 1  # every chunk once, plus the EVAL
    assert per == expected and total == sum(expected)


def test_a_dying_process_hands_its_chunk_to_the_other(fake):
    hyps, refs, expected = _inputs(10 * meteor.CHUNK_LINES)
    fake.die_after["small.gz"] = 2
    with meteor.MeteorPool(now=[None, "small.gz"]) as pool:
        total, per = pool.score(hyps, refs)
    assert per == expected
    assert fake.made[1].closed and fake.made[0].chunks >= 8


def test_when_every_process_dies_the_error_is_raised_not_hung(fake):
    hyps, refs, _ = _inputs(5 * meteor.CHUNK_LINES)
    fake.die_after[None] = 1
    with meteor.MeteorPool(now=[None], later=[lambda: None]) as pool:
        with pytest.raises(TomcapError, match="OutOfMemoryError"):
            pool.score(hyps, refs)


def test_a_joiner_without_table_never_starts(fake):
    hyps, refs, expected = _inputs(3)
    with meteor.MeteorPool(now=[None], later=[lambda: None]) as pool:
        assert pool.score(hyps, refs)[1] == expected
        assert pool.score(hyps[::-1], refs[::-1])[1] == expected[::-1]  # statistics reused
    assert len(fake.made) == 1 and fake.made[0].chunks == 1 + 2  # one SCORE chunk, two EVALs


def test_auto_workers_one_per_core_capped():
    assert [meteor.auto_meteor_workers(c) for c in (1, 2, 16)] == [1, 2, meteor.MAX_AUTO_WORKERS]


def test_the_eval_skips_a_process_that_died_after_answering(fake):
    """The first process to answer may be gone by the EVAL: another live one computes it."""
    hyps, refs, expected = _inputs(6 * meteor.CHUNK_LINES)
    fake.die_after["small.gz"] = 1
    with meteor.MeteorPool(now=["small.gz", None]) as pool:
        total, per = pool.score(hyps, refs)
    assert per == expected and total == sum(expected)


@pytest.mark.parametrize("built", [True, False])
def test_one_worker_scores_on_the_copy_it_builds_or_on_the_full_table(fake, monkeypatch, tmp_path, built):
    """One process: the run builds the filtered copy and its only process scores on it; if the filter fails,
    that process starts on the full table instead of leaving none."""
    from tomcap.evaluate import coco_metrics

    class Build:
        def wait(self):
            return tmp_path / "paraphrase-x.gz" if built else None

    monkeypatch.setattr(coco_metrics.ParaphraseCache, "start_build", lambda self, key, refs: Build())
    hyps, refs, expected = _inputs(3 * meteor.CHUNK_LINES)
    raw = [r for rs in refs for r in rs]
    timings: dict[str, float] = {}
    side = coco_metrics._MeteorSide(1, 1, tmp_path, raw, timings)
    side.references_ready(raw)
    try:
        assert side.score(hyps, refs)[1] == expected
    finally:
        side.close(keep_table=True)
    assert timings["meteor_table_built"] == 1.0 and timings["meteor_processes"] == 1.0
    assert [p.table for p in fake.made] == [tmp_path / "paraphrase-x.gz" if built else None]
