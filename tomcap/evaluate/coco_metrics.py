"""COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, optional SPICE) for one or many
results files against shared references, with pycocoevalcap's numbers.

The schedule is what makes it fast; the maths is the toolkit's:

1. METEOR starts first: on a paraphrase table filtered to this reference set when one is cached
   (one process per core, ready in ~1 s, see ``paraphrase``), else one process on the full table
   (~7 s to load);
2. one PTB tokenizer process tokenises the references once and every results file's captions;
   when a filtered table is worth building (``paraphrase``), the table is then filtered beside
   the loading process, and a second process joins the scoring on the filtered copy, which is
   kept for the next run;
3. meanwhile BLEU, ROUGE-L and CIDEr run in numpy (``ngrams``, ``rouge``);
4. a background thread hands every file's METEOR lines, in chunks, to whichever process is free
   (``meteor.MeteorPool``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .java import java_executable, ptb_tokenize, spice_available
from .meteor import FULL_TABLE, MeteorPool, auto_meteor_workers
from .meteor_table import StoredCopyBuild, stored_copy
from .ngrams import BLEU_N, RefGroups, RefIndex, bleu, cider, encode
from .paraphrase import FilterBuild, ParaphraseCache, cache_key
from .rouge import rouge_l

log = logging.getLogger(__name__)

BLEU_NAMES = tuple(f"Bleu_{k}" for k in range(1, BLEU_N + 1))
METRIC_NAMES = (*BLEU_NAMES, "METEOR", "ROUGE_L", "CIDEr")
"""Metric keys as pycocoevalcap names them (``COCOEvalCap.eval``)."""
SPICE = "SPICE"


@dataclass
class EvalItem:
    """One results file aligned with its references (see ``loading.align``)."""

    name: str
    keys: list[str]  # image keys, results order
    ref_keys: list[str]  # the reference image each key resolved to
    refs: list[list[str]]  # raw references per image
    hyps: list[str]  # raw caption per image


@dataclass
class CocoScores:
    """Scores of one results file."""

    name: str
    keys: list[str]
    metrics: dict[str, float]
    bleu_stats: dict
    per_image: dict[str, np.ndarray]  # metric -> (N,)
    tokenized_hyps: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def _spice(gts: dict, res: dict) -> tuple[float, np.ndarray]:
    from pycocoevalcap.spice.spice import Spice

    score, scores = Spice().compute_score(gts, res)
    return float(score), np.array([s["All"]["f"] for s in scores], dtype=np.float64)


def _reference_slots(items: Sequence[EvalItem]) -> tuple[dict, list[list[str]]]:
    """Every reference image any item evaluates, once: a sweep's items share them."""
    ref_slot: dict[tuple[str, tuple[str, ...]], int] = {}
    for item in items:
        for key, r in zip(item.ref_keys, item.refs):
            ref_slot.setdefault((key, tuple(r)), len(ref_slot))
    return ref_slot, [list(r) for _, r in ref_slot]


class _MeteorSide:
    """METEOR for one run, started before tokenisation.

    Table cached for these references: ``workers`` processes on it at once (~1 s to load). Not
    cached: one process on the full table at once; when the copy is worth building (a cache folder,
    more than one worker, and a sweep or a reference set seen before: see ``paraphrase``), the table
    is filtered beside it (from the tokenised references, see :meth:`references_ready`) and the
    other processes join on the filtered copy, which stays for the next run.
    """

    def __init__(self, n_items: int, workers: int | None, cache_dir: Path | None, raw_refs: list[str],
                 timings: dict[str, float]):
        self.timings = timings
        self.cache = ParaphraseCache(cache_dir) if cache_dir is not None else None
        self.key = cache_key(raw_refs) if self.cache is not None else ""
        table = self.cache.lookup(self.key) if self.cache is not None else None
        timings["meteor_table_cached"] = float(table is not None)
        workers = workers or auto_meteor_workers()
        self._refs = threading.Event()
        self._build: FilterBuild | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._wants_build = False
        self._copy: StoredCopyBuild | None = None
        if table is not None:
            self.pool = MeteorPool(now=[table] * workers)
            return
        if stored_copy() is None:  # for the next run: this one has started on the compressed table
            self._copy = StoredCopyBuild()
        if self.cache is not None:
            # see paraphrase.py: on two cores a one-off, one-file evaluation is fastest without the filter.
            # One process (a demo worker pinned to its core) filters first and then scores on the copy:
            # on the demo's 500 test images that run takes 5 s, the full table 10 s, and later runs 2 s
            # (benchmarks/results/meteor_one_worker.json).
            self._wants_build = workers == 1 or n_items > 1 or self.cache.seen(self.key)
            if not self._wants_build:
                self.cache.mark_seen(self.key)
        if self._wants_build and workers == 1:
            self.pool = MeteorPool(now=[], later=[self._filtered_or_full])
        else:
            joiners = [self._filtered_table] * (workers - 1) if self._wants_build else []
            self.pool = MeteorPool(now=[None], later=joiners)
        timings["meteor_table_built"] = float(self._wants_build)

    def references_ready(self, tok_ref_sentences: list[str]) -> None:
        """Tokenised references (the lines METEOR sees): start the filter if this run builds one."""
        with self._lock:
            if self._wants_build and not self._closed:
                self._t_build = time.perf_counter()
                self._build = self.cache.start_build(self.key, tok_ref_sentences)
        self._refs.set()

    def _filtered_table(self) -> Path | None:
        """Runs in a pool worker: the filtered table once built (None if none is built)."""
        self._refs.wait()
        build = self._build
        if build is None:
            return None
        table = build.wait()
        self.timings.setdefault("meteor_filter", time.perf_counter() - self._t_build)
        return table

    def _filtered_or_full(self) -> Path:
        """The one process of a one-worker run that builds the copy: on it, or on the full table if that failed."""
        return self._filtered_table() or FULL_TABLE

    def score(self, hyps: list[str], refs: list[list[str]]) -> tuple[float, list[float]]:
        return self.pool.score(hyps, refs)

    def close(self, keep_table: bool) -> None:
        """Stop the processes; ``keep_table``: first let a running filter finish (the next run needs it)."""
        with self._lock:
            self._closed = True
            build = self._build
        self._refs.set()
        self.pool.stop_joining()
        if build is not None:
            if keep_table:
                build.wait()
            else:
                build.cancel()
        if self._copy is not None:
            self._copy.wait()
        self.timings["meteor_processes"] = float(self.pool.n_started)
        self.pool.close()


def score_items(items: Sequence[EvalItem], *, meteor: bool = True, spice: bool = True,
                meteor_workers: int | None = None, cache_dir: Path | None = None) -> list[CocoScores]:
    """COCO metrics of each item; references shared by items are tokenised once.

    ``meteor_workers`` METEOR processes split the scoring (default: ``auto_meteor_workers``).
    ``cache_dir`` keeps METEOR paraphrase tables filtered to a reference set (``paraphrase``),
    built beside the full-table process by a sweep or by the second run against a reference set
    (that run waits for the filter if scoring ends first); later runs load it in ~1 s, not ~7 s.
    ``spice`` asks for SPICE when its CoreNLP jars are present; when they are not, it is skipped
    with one warning and left out of the metrics (never reported as 0).
    """
    java_executable()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ref_slot, ref_lists = _reference_slots(items)
    side = _MeteorSide(len(items), meteor_workers, cache_dir, [s for r in ref_lists for s in r],
                       timings) if meteor else None
    ok = False
    try:
        out = _score(items, ref_slot, ref_lists, side, spice, timings)
        ok = True
    finally:
        if side is not None:
            side.close(keep_table=ok)
    total = time.perf_counter() - t0  # includes waiting for a filter that was still running
    for scores in out:
        scores.timings.update({k: v for k, v in timings.items() if k.startswith("meteor")}, total=total)
    return out


def _score(items: Sequence[EvalItem], ref_slot: dict, ref_lists: list[list[str]], meteor: _MeteorSide | None,
           spice: bool, timings: dict[str, float]) -> list[CocoScores]:
    sizes = np.array([len(r) for r in ref_lists], dtype=np.int64)
    raw = [s for r in ref_lists for s in r] + [h for item in items for h in item.hyps]
    t = time.perf_counter()
    tokens = ptb_tokenize(raw)
    timings["tokenize"] = time.perf_counter() - t
    n_ref_sent = int(sizes.sum())
    starts = np.cumsum(sizes) - sizes
    tok_refs = [tokens[s:s + m] for s, m in zip(starts.tolist(), sizes.tolist())]
    t = time.perf_counter()
    tables = encode(tokens)
    index = RefIndex(tables, RefGroups(start=starts, size=sizes))
    timings["ngrams"] = time.perf_counter() - t

    per_item = []
    offset = n_ref_sent
    for item in items:
        images = np.array([ref_slot[(k, tuple(r))] for k, r in zip(item.ref_keys, item.refs)], dtype=np.int64)
        hyp_sent = np.arange(offset, offset + len(item.hyps), dtype=np.int64)
        offset += len(item.hyps)
        per_item.append((images, hyp_sent))

    meteor_futures: list[Future] = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meteor") if meteor else None
    try:
        if meteor is not None and pool is not None:
            meteor.references_ready(tokens[:n_ref_sent])
            for images, hyp_sent in per_item:
                hyps = [tokens[s] for s in hyp_sent.tolist()]
                refs = [tok_refs[i] for i in images.tolist()]
                meteor_futures.append(pool.submit(meteor.score, hyps, refs))
        out = []
        for item, (images, hyp_sent) in zip(items, per_item):
            out.append(_python_metrics(item, index, tokens, tok_refs, images, hyp_sent, dict(timings)))
        t = time.perf_counter()
        for scores, fut in zip(out, meteor_futures):
            m, per = fut.result()
            scores.metrics["METEOR"] = m
            scores.per_image["METEOR"] = np.asarray(per, dtype=np.float64)
        timings["meteor_wait"] = time.perf_counter() - t
    finally:
        if pool is not None:
            if any(not f.done() for f in meteor_futures) and meteor is not None:
                meteor.close(keep_table=False)  # an error on this side: stop the JVMs so the thread ends now
            pool.shutdown(wait=True, cancel_futures=True)
    if spice and out:
        if spice_available():
            for scores, (images, hyp_sent) in zip(out, per_item):
                gts = {i: tok_refs[img] for i, img in enumerate(images.tolist())}
                res = {i: [tokens[s]] for i, s in enumerate(hyp_sent.tolist())}
                scores.metrics[SPICE], scores.per_image[SPICE] = _spice(gts, res)
        else:
            log.warning("SPICE skipped: the Stanford CoreNLP jars "
                        "(pycocoevalcap/spice/lib/stanford-corenlp-3.6.0*.jar) "
                        "are not installed and cannot be downloaded here; SPICE is absent from the metrics")
    for scores in out:
        scores.metrics = {k: scores.metrics[k] for k in (*METRIC_NAMES, SPICE) if k in scores.metrics}
    return out


def _python_metrics(item: EvalItem, index: RefIndex, tokens: list[str], tok_refs: list[list[str]],
                    images: np.ndarray, hyp_sent: np.ndarray, timings: dict[str, float]) -> CocoScores:
    hyps = [tokens[s] for s in hyp_sent.tolist()]
    refs = [tok_refs[i] for i in images.tolist()]
    metrics: dict[str, float] = {}
    per_image: dict[str, np.ndarray] = {}
    t = time.perf_counter()
    b, b_per, stats = bleu(index, images, hyp_sent)
    timings["bleu"] = time.perf_counter() - t
    for name, score, per in zip(BLEU_NAMES, b, b_per):
        metrics[name], per_image[name] = score, np.asarray(per, dtype=np.float64)
    t = time.perf_counter()
    metrics["ROUGE_L"], per_image["ROUGE_L"] = rouge_l(hyps, refs)
    timings["rouge"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics["CIDEr"], per_image["CIDEr"] = cider(index, images, hyp_sent)
    timings["cider"] = time.perf_counter() - t
    return CocoScores(name=item.name, keys=item.keys, metrics=metrics, bleu_stats=stats, per_image=per_image,
                      tokenized_hyps=hyps, timings=timings)
