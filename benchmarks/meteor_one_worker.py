"""METEOR in a demo worker (one process pinned to one core): the full paraphrase table vs the copy filtered to the
references, alternated in one run (issue 20: the demo's 14 evaluations each loaded the full table).

Each round scores the same results file twice with ``meteor_workers=1`` on core 0: once with no cache folder
(the full table, as every demo evaluation did before) and once on the filtered copy, built by a first run
before the rounds (that run filters, then scores on the copy: reported apart). Scores must be identical.

    .venv/bin/python benchmarks/meteor_one_worker.py --results RESULTS.json --refs world_captions_test.json \
        --rounds 3 --json benchmarks/results/meteor_one_worker.json
    .venv/bin/python benchmarks/meteor_one_worker.py --rounds 1 \
        --results ../shared/data/captions/magic_results/magic_mscoco_karpathy_test_result.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tomcap.evaluate.coco_metrics import EvalItem, score_items
from tomcap.evaluate.loading import align, load_references, load_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--refs", type=Path, default=None, help="references (default: the results file is paired)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    res_keys, ref_keys, refs, hyps = align(load_results(args.results),
                                        load_references(args.refs) if args.refs else None)
    items = [EvalItem("run", res_keys, ref_keys, refs, hyps)]

    def run(cache: Path | None) -> tuple[float, dict]:
        t = time.perf_counter()
        out = score_items(items, spice=False, meteor_workers=1, cache_dir=cache)[0]
        return time.perf_counter() - t, out.timings | {"METEOR": out.metrics["METEOR"]}

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        build_s, build = run(cache)  # filters, then scores on the copy
        assert build["meteor_table_built"] == 1.0
        full, filtered, meteor = [], [], set()
        for _ in range(args.rounds):
            s, t = run(None)
            full.append(s)
            meteor.add(t["METEOR"])
            s, t = run(cache)
            filtered.append(s)
            meteor.add(t["METEOR"])
            assert t["meteor_table_cached"] == 1.0
    if len(meteor | {build["METEOR"]}) != 1:
        raise SystemExit(f"METEOR differs between the tables: {sorted(meteor)}")
    out = {"images": len(hyps), "rounds": args.rounds, "full_table_s": [round(x, 2) for x in full],
           "filtered_copy_s": [round(x, 2) for x in filtered], "build_run_s": round(build_s, 2),
           "ratio_median": round(statistics.median(f / g for f, g in zip(full, filtered)), 2),
           "METEOR": meteor.pop()}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
