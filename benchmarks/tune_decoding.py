"""Decoding hyper-parameters of the demo, chosen on the world's VALIDATION split (issue 20).

Trains the demo's ``full`` variant once (``configs/demo.yaml`` as committed; the library stages the
demo flow's tasks call, without Prefect), then captions and scores the validation split for each
decoding setting: beam sizes at the committed CFG scale, CFG scales at the best beam, then n-gram
blocking at the best of those (coordinate search: a full grid did not fit the shared machine).
Then MacCap's CLIP rerank of the finished beams (``decode.clip_rerank``) at the chosen setting, for
several likelihood weights, then wider beams, and MacCap's sampling + rerank for comparison. Chooses by
validation CIDEr (attribute F1 breaks ties within 0.01) among the settings whose generation fits the
demo's time (``GENERATE_BUDGET``). Nothing here reads the test or novel splits; the val nearest_caption
row is there to compare with.

    nice -n 5 .venv/bin/python benchmarks/tune_decoding.py --root /tmp/tune --out benchmarks/results/tune_decoding.json

``--rerank-only`` starts at beam 5 with the committed CFG / n-gram setting (``clip_rerank`` off) and runs
only the rerank rows. ``--scales-only`` re-checks the CFG scale alone at the committed decoding (beam, n-gram
block, CLIP rerank and its weight): for a new CLIP or checkpoint, where the rest was chosen before.
"""
from __future__ import annotations

import json
import time
from _demo_world import demo_arguments

BEAMS = (1, 3, 5)
SCALES = (1.0, 1.1, 1.3, 1.6)
NGRAM_BLOCK = (0, 3)
RERANK_WEIGHTS = (0.0, 0.1, 0.3, 1.0)
"""``generate.likelihood_weight`` of the rerank rows: CLIP similarity + weight x mean guided log-score."""
WIDE_BEAMS = (8, 12, 16)
"""Beam widths of the rerank rows at the chosen weight: reranking picks among more finished beams."""
GENERATE_BUDGET, REFERENCE_BEAM = 2.0, 5
"""A setting is chosen only if its generation takes at most this multiple of beam 5's without reranking (as
measured here; the demo's 15-minute timing was made with it): ``tomcap demo`` runs 12 generations."""
SAMPLE_TEMPERATURES = (1.0, 0.7)
"""MacCap's own recipe for comparison: ``WIDE_BEAMS[0]`` top-p samples, reranked with the chosen weight."""
SPLIT = "val"
SHOWN = ("CIDEr", "Bleu_4", "CLIPScore", "color_acc", "shape_acc", "attr_f1", "count_acc")


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--rerank-only", action="store_true", help="only the rerank rows, at the committed setting")
    ap.add_argument("--scales-only", action="store_true", help="only the CFG scales, at the committed setting")
    args = ap.parse_args(argv)

    from _demo_world import wired_demo
    from tomcap.demo.report import variant_metrics
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.demo.variants import demo_variants
    from tomcap.pipeline import reusable, run_until

    dd = str(args.root)
    world, wired = wired_demo(args.config, dd)
    cfg = demo_variants(wired)["full"]
    t0 = time.perf_counter()
    refs = run_until(cfg, dd, "train")
    train_s = time.perf_counter() - t0
    rows = []
    no_meteor = cfg.evaluate.model_copy(update={"meteor": False})

    def shown(metrics: dict) -> dict:
        return {k: round(metrics[k], 4) for k in SHOWN if k in metrics}

    def score(beam: int, scale: float, block: int, rerank: float | None = None,
              temperature: float | None = None) -> dict:
        sample = {} if temperature is None else {"strategy": "sample", "num_samples": beam, "temperature": temperature}
        decode = cfg.generate.decode.model_copy(update={"beam_size": beam, "guidance_scale": scale,
                                                        "no_repeat_ngram_size": block,
                                                        "clip_rerank": rerank is not None and not sample, **sample})
        generate = cfg.generate.model_copy(update={"decode": decode, **({} if rerank is None else
                                                                        {"likelihood_weight": rerank})})
        variant = cfg.model_copy(update={"generate": generate, "evaluate": no_meteor})
        scfg = split_pipeline_config(variant, world, SPLIT)
        t = time.perf_counter()
        done = run_until(scfg, dd, "evaluate", reusable(cfg, refs, scfg))
        metrics, _ = variant_metrics(world, done["evaluate"], done["generate"], SPLIT)
        row = {"beam_size": beam, "guidance_scale": scale, "no_repeat_ngram_size": block, "rerank_weight": rerank,
               "sample_temperature": temperature, "seconds": round(time.perf_counter() - t, 1),
               # the generation's own time, from its manifest: also right when this run found it cached
               "generate_s": done["generate"].manifest().info["seconds"],
               **shown(metrics)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        return row

    committed = cfg.generate.decode

    def key(r: dict) -> tuple:
        return (round(r["CIDEr"], 2), r.get("attr_f1", 0.0))

    def cells(r: dict) -> str:
        return " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in SHOWN)

    def write(result: dict, lines: list[str]) -> int:
        """The JSON (``result`` between the run's facts and its rows) and the .md table beside it."""
        out = {"split": SPLIT, "config": str(args.config), "train_s": round(train_s, 1), **result, "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0

    if args.scales_only:
        for scale in SCALES:
            score(committed.beam_size, scale, committed.no_repeat_ngram_size,
                  rerank=cfg.generate.likelihood_weight if committed.clip_rerank else None)
        best = max(rows, key=key)
        lines = ["| CFG scale | generate s | " + " | ".join(SHOWN) + " |", "|---" * (2 + len(SHOWN)) + "|"]
        lines += [f"| {r['guidance_scale']}{' **(chosen)**' if r is best else ''} | {r['generate_s']:.0f} | "
                  f"{cells(r)} |" for r in rows]
        return write({"committed": {"beam_size": committed.beam_size, "guidance_scale": committed.guidance_scale},
                      "chosen": {"guidance_scale": best["guidance_scale"]},
                      "rule": "max validation CIDEr (rounded to 0.01), then attr_f1"}, lines)
    if args.rerank_only:
        best = score(REFERENCE_BEAM, committed.guidance_scale, committed.no_repeat_ngram_size)
    else:
        for beam in BEAMS:
            score(beam, committed.guidance_scale, committed.no_repeat_ngram_size)
        best = max(rows, key=key)
        for scale in SCALES:
            if scale != committed.guidance_scale:
                score(best["beam_size"], scale, committed.no_repeat_ngram_size)
        best = max(rows, key=key)
        for block in NGRAM_BLOCK:
            if block != best["no_repeat_ngram_size"]:
                score(best["beam_size"], best["guidance_scale"], block)
        best = max(rows, key=key)
    scfg = split_pipeline_config(cfg.model_copy(update={"evaluate": no_meteor}), world, SPLIT)
    done = run_until(scfg, dd, "evaluate_nearest", reusable(cfg, refs, scfg))
    metrics, _ = variant_metrics(world, done["evaluate_nearest"], done["nearest_caption"], SPLIT)
    nearest = shown(metrics)
    print(json.dumps({"nearest_caption": nearest}), flush=True)
    setting = (best["beam_size"], best["guidance_scale"], best["no_repeat_ngram_size"])
    for weight in RERANK_WEIGHTS:
        score(*setting, rerank=weight)
    reranked = max((r for r in rows if r["rerank_weight"] is not None), key=key)
    for beam in WIDE_BEAMS:
        score(beam, *setting[1:], rerank=reranked["rerank_weight"])
    for temperature in SAMPLE_TEMPERATURES:
        score(WIDE_BEAMS[0], *setting[1:], rerank=reranked["rerank_weight"], temperature=temperature)
    reference = next(r for r in rows if r["beam_size"] == REFERENCE_BEAM and r["rerank_weight"] is None)
    budget = GENERATE_BUDGET * reference["generate_s"]
    best = max((r for r in rows if r["generate_s"] <= budget), key=key)
    lines = ["| beam (samples) | CFG scale | n-gram block | CLIP rerank (likelihood weight) | generate s | "
             + " | ".join(SHOWN) + " |", "|---" * (5 + len(SHOWN)) + "|"]
    for r in rows:
        mark = " **(chosen)**" if r is best else (" (over budget)" if r["generate_s"] > budget else "")
        rerank = "off" if r["rerank_weight"] is None else f"on ({r['rerank_weight']})"
        t = r["sample_temperature"]
        width = r["beam_size"] if t is None else f"({r['beam_size']}, T={t})"
        lines.append(f"| {width} | {r['guidance_scale']} | {r['no_repeat_ngram_size']} | {rerank}{mark} | "
                     f"{r['generate_s']:.0f} | {cells(r)} |")
    lines.append(f"| nearest_caption (no model) | | | | | {cells(nearest)} |")
    return write({"committed": {"beam_size": committed.beam_size, "guidance_scale": committed.guidance_scale,
                                "no_repeat_ngram_size": committed.no_repeat_ngram_size},
                  "chosen": {k: best[k] for k in ("beam_size", "guidance_scale", "no_repeat_ngram_size",
                                                  "rerank_weight")},
                  "rule": f"max validation CIDEr (rounded to 0.01), then attr_f1, among rows whose generation took "
                          f"at most {GENERATE_BUDGET}x beam {REFERENCE_BEAM}'s without rerank ({budget:.0f} s)",
                  "nearest_caption": nearest}, lines)


if __name__ == "__main__":
    raise SystemExit(main())
