"""Decoding hyper-parameters of the demo, chosen on the world's VALIDATION split (issue 20).

Trains the demo's ``full`` variant once (``configs/demo.yaml`` as committed; the library stages the
demo flow's tasks call, without Prefect), then captions and scores the validation split for each
decoding setting: beam sizes at the committed CFG scale, CFG scales at the best beam, then n-gram
blocking at the best of those (coordinate search: a full grid did not fit the shared machine).
Chooses by validation CIDEr (attribute F1 breaks ties within 0.01). Nothing here reads the test
or novel splits.

    nice -n 5 .venv/bin/python benchmarks/tune_decoding.py --root /tmp/tune --out benchmarks/results/tune_decoding.json
"""
from __future__ import annotations

import json
import time
from _demo_world import demo_arguments

BEAMS = (1, 3, 5)
SCALES = (1.0, 1.1, 1.3, 1.6)
NGRAM_BLOCK = (0, 3)
SPLIT = "val"
SHOWN = ("CIDEr", "Bleu_4", "CLIPScore", "color_acc", "shape_acc", "attr_f1", "count_acc")


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
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

    def score(beam: int, scale: float, block: int) -> dict:
        decode = cfg.generate.decode.model_copy(update={"beam_size": beam, "guidance_scale": scale,
                                                        "no_repeat_ngram_size": block})
        variant = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"decode": decode}),
                                         "evaluate": cfg.evaluate.model_copy(update={"meteor": False})})
        scfg = split_pipeline_config(variant, world, SPLIT)
        t = time.perf_counter()
        done = run_until(scfg, dd, "evaluate", reusable(cfg, refs, scfg))
        metrics, _ = variant_metrics(world, done["evaluate"], done["generate"], SPLIT)
        row = {"beam_size": beam, "guidance_scale": scale, "no_repeat_ngram_size": block,
               "seconds": round(time.perf_counter() - t, 1), **{k: round(metrics[k], 4) for k in SHOWN if k in metrics}}
        print(json.dumps(row), flush=True)
        rows.append(row)
        return row

    committed = cfg.generate.decode

    def key(r: dict) -> tuple:
        return (round(r["CIDEr"], 2), r.get("attr_f1", 0.0))

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
    out = {"split": SPLIT, "config": str(args.config), "train_s": round(train_s, 1),
           "committed": {"beam_size": committed.beam_size, "guidance_scale": committed.guidance_scale,
                         "no_repeat_ngram_size": committed.no_repeat_ngram_size},
           "chosen": {k: best[k] for k in ("beam_size", "guidance_scale", "no_repeat_ngram_size")},
           "rule": "max validation CIDEr (rounded to 0.01), then attr_f1", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    lines = ["| beam | CFG scale | n-gram block | " + " | ".join(SHOWN) + " |", "|---" * (3 + len(SHOWN)) + "|"]
    for r in rows:
        mark = " **(chosen)**" if r is best else ""
        lines.append(f"| {r['beam_size']} | {r['guidance_scale']} | {r['no_repeat_ngram_size']}{mark} | "
                     + " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in SHOWN) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
