"""Benchmark: our COCO caption metrics against stock pycocoevalcap 1.2, side by side, same run.

(a) one file: the MAGIC Karpathy-test results (4982 images), scored by the stock calls as the COCO
    toolkit makes them (PTBTokenizer on references and on results, Bleu(4), Meteor(), Rouge(),
    Cider(); Meteor() is built before scoring starts, as COCOEvalCap builds its scorer list) and by
    ``tomcap.evaluate.score_items``; wall time per metric and in total; every corpus and per-image
    number must be identical.
(b) a sweep: SWEEP_FILES results files for the same references (variants of the MAGIC captions, as
    a guidance sweep produces: words dropped, captions of other images swapped in), scored by our
    evaluator in one call against SWEEP_FILES stock runs.

Goals (issue 11): (a) ours <= 0.6x stock total; (b) ours <= 0.3x the stock runs.

Ours runs three times in (a), with a fresh cache folder, as a user's runs against new references go
(see tomcap/evaluate/paraphrase.py): "first" (one METEOR process on the full paraphrase table; the
goal is about this run), "second" (the same, plus the table filtered to these references beside
it, kept) and "cached" (two processes on the filtered table). The sweep (b) shares (a)'s
references and so finds the table (unless --no-cache or --skip-single).

    .venv/bin/python benchmarks/evaluate.py [--captions ../shared/data/captions] [--sweep 8]
        [--stock-sweep-runs 8] [--json OUT.json]

``--stock-sweep-runs K < 8`` times K stock runs and scales them to 8 (reported as an estimate).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from tomcap.constants import PROJECT_ROOT
from tomcap.evaluate import EvalItem, align, load_results, score_items

MAGIC = Path("magic_results") / "magic_mscoco_karpathy_test_result.json"
SWEEP_FILES = 8
SWAP_P, DROP_P = 0.1, 0.5
"""Per caption, in a sweep variant: probability to take another image's caption / to drop one word."""
GOAL_SINGLE, GOAL_SWEEP = 0.6, 0.3


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the JVMs): load-independent work."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def stock_run(gts_raw: dict, res_raw: dict) -> tuple[dict, dict, dict]:
    """Stock pycocoevalcap as COCOEvalCap.evaluate runs it: (scores, per-image scores, seconds)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    times: dict[str, float] = {}
    cpu0 = cpu_seconds()
    t_all = time.perf_counter()
    t = time.perf_counter()
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts_raw), tok.tokenize(res_raw)
    times["tokenize"] = time.perf_counter() - t
    scorers = [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (Meteor(), ["METEOR"]), (Rouge(), ["ROUGE_L"]),
               (Cider(), ["CIDEr"])]
    scores, per = {}, {}
    for scorer, names in scorers:
        t = time.perf_counter()
        s, ss = scorer.compute_score(gts, res, verbose=0) if names[0] == "Bleu_1" else scorer.compute_score(gts, res)
        times[names[0] if len(names) == 1 else "BLEU"] = time.perf_counter() - t
        if len(names) == 1:
            s, ss = [s], [ss]
        for name, v, vv in zip(names, s, ss):
            scores[name], per[name] = float(v), np.asarray(vv, dtype=np.float64)
    del scorers, scorer  # stops (and reaps) the METEOR jar
    times["total"] = time.perf_counter() - t_all
    times["cpu"] = cpu_seconds() - cpu0
    return scores, per, times


def ours_run(items: list[EvalItem], workers: int | None, cache_dir: Path | None) -> tuple[list, float]:
    t, cpu0 = time.perf_counter(), cpu_seconds()
    out = score_items(items, spice=False, meteor_workers=workers, cache_dir=cache_dir)
    out[0].timings["cpu"] = cpu_seconds() - cpu0
    return out, time.perf_counter() - t


def identical(ours, scores: dict, per: dict) -> bool:
    return all(ours.metrics[k] == v and np.array_equal(ours.per_image[k], per[k]) for k, v in scores.items())


def sweep_variants(records: list[dict], n: int) -> list[list[dict]]:
    """n variants of the paired records with perturbed predictions (deterministic)."""
    out = []
    preds = [r["prediction"] for r in records]
    for v in range(n):
        rng = np.random.default_rng(v)
        recs = []
        for i, r in enumerate(records):
            p = preds[int(rng.integers(len(preds)))] if rng.random() < SWAP_P else preds[i]
            words = p.split()
            if len(words) > 2 and rng.random() < DROP_P:
                del words[int(rng.integers(len(words)))]
            recs.append({**r, "prediction": " ".join(words)})
        out.append(recs)
    return out


def items_of(records: list[dict], name: str, tmp: Path) -> EvalItem:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(records))
    keys, ref_keys, gts, hyps = align(load_results(path), None)
    return EvalItem(name=name, keys=keys, ref_keys=ref_keys, refs=gts, hyps=hyps)


def stock_inputs(records: list[dict]) -> tuple[dict, dict]:
    gts = {r["image_name"]: [{"caption": c} for c in r["captions"]] for r in records}
    res = {r["image_name"]: [{"caption": r["prediction"]}] for r in records}
    return gts, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "captions")
    ap.add_argument("--sweep", type=int, default=SWEEP_FILES)
    ap.add_argument("--stock-sweep-runs", type=int, default=SWEEP_FILES)
    ap.add_argument("--meteor-workers", type=int, default=None, help="default: auto_meteor_workers")
    ap.add_argument("--no-cache", action="store_true", help="never use a filtered METEOR paraphrase table")
    ap.add_argument("--skip-single", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import tempfile

    records = json.loads((args.captions / MAGIC).read_text())
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_avg_start": os.getloadavg()}, "n_images": len(records)}
    with tempfile.TemporaryDirectory() as tmp:
        cache = None if args.no_cache else Path(tmp) / "cache"
        if not args.skip_single:
            # (a) one file, stock then ours: first with no cached table (this run writes it), then with it
            s_scores, s_per, s_times = stock_run(*stock_inputs(records))
            item = items_of(records, "magic", Path(tmp))
            report["single"] = {"stock_s": s_times, "goal": GOAL_SINGLE, "load_avg": os.getloadavg()}
            print("(a) one file; stock per metric (s):", {k: round(v, 2) for k, v in s_times.items()})
            for label in ("first", "second", "cached") if cache is not None else ("first",):
                (ours,), o_total = ours_run([item], args.meteor_workers, cache)
                same = identical(ours, s_scores, s_per)
                report["single"][label] = {"ours_s": {**ours.timings, "total": o_total},
                                           "ratio": o_total / s_times["total"], "identical": same}
                print(f"    ours, {label} run: {o_total:.1f} s, ratio {o_total / s_times['total']:.2f} "
                      f"(goal <= {GOAL_SINGLE}), identical: {same}")
                print("      steps (s):", {k: round(v, 2) for k, v in ours.timings.items()})
            report["single"]["scores"], report["single"]["bleu_stats"] = ours.metrics, ours.bleu_stats
            print("    scores:", {k: round(v, 4) for k, v in ours.metrics.items()}, ours.bleu_stats)
        # (b) sweep
        variants = sweep_variants(records, args.sweep)
        items = [items_of(v, f"variant{i}", Path(tmp)) for i, v in enumerate(variants)]
        outs, o_total = ours_run(items, args.meteor_workers, cache)
        stock_times, stock_cpu, all_same = [], [], True
        for i in range(min(args.stock_sweep_runs, args.sweep)):
            s_scores, s_per, s_times = stock_run(*stock_inputs(variants[i]))
            stock_times.append(s_times["total"])
            stock_cpu.append(s_times["cpu"])
            all_same &= identical(outs[i], s_scores, s_per)
        stock_total = float(np.mean(stock_times)) * args.sweep
        estimated = len(stock_times) < args.sweep
        report["sweep"] = {"files": args.sweep, "ours_s": o_total, "stock_runs_s": stock_times,
                           "ours_cpu_s": outs[0].timings["cpu"], "stock_cpu_s": float(np.mean(stock_cpu)) * args.sweep,
                           "stock_total_s": stock_total, "stock_estimated": estimated,
                           "ratio": o_total / stock_total, "goal": GOAL_SWEEP,
                           "identical_checked": len(stock_times), "identical": all_same,
                           "ours_steps_s": outs[0].timings,
                           "table_cached": bool(outs[0].timings.get("meteor_table_cached"))}
        print(f"(b) sweep of {args.sweep}: stock {stock_total:.1f} s"
              f"{' (estimated from %d runs)' % len(stock_times) if estimated else ''}, "
              f"ours {o_total:.1f} s, ratio {o_total / stock_total:.2f} (goal <= {GOAL_SWEEP}), "
              f"identical on {len(stock_times)} files: {all_same}; CPU-s ours {outs[0].timings['cpu']:.1f} vs stock "
              f"{float(np.mean(stock_cpu)) * args.sweep:.1f}")
    report["machine"]["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
