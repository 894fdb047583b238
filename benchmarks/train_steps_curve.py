"""Does the demo's decoder converge in its 300 steps? Validation scores of the demo's variants vs training steps.

Trains ``--variants`` (default: full) of configs/demo.yaml with ``train.steps`` in --steps (warm-up, eval and
checkpoint intervals scaled alike; everything else as committed), captions and scores the VALIDATION split
with the committed decoding. Only validation is read.

    nice -n 5 .venv/bin/python benchmarks/train_steps_curve.py --root DIR --out benchmarks/results/steps_curve.json
"""
from __future__ import annotations

import json
import time
from _demo_world import demo_arguments

SHOWN = ("CIDEr", "Bleu_4", "color_acc", "shape_acc", "attr_f1", "count_acc")
SPLIT = "val"


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[300, 1200])
    ap.add_argument("--variants", nargs="+", default=["full"])
    args = ap.parse_args(argv)

    from _demo_world import wired_demo
    from tomcap.demo.report import variant_metrics
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.demo.variants import all_variants
    from tomcap.pipeline import run_until

    dd = str(args.root)
    world, wired = wired_demo(args.config, dd)
    rows = []
    for name in args.variants:
        for steps in args.steps:
            f = steps / wired.train.steps
            tr = wired.train.model_copy(update={"steps": steps, "warmup_steps": round(wired.train.warmup_steps * f),
                                                "eval_every": round(wired.train.eval_every * f),
                                                "checkpoint_every": round(wired.train.checkpoint_every * f)})
            variant = all_variants(wired.model_copy(update={"train": tr}))[name]
            variant = variant.model_copy(update={"evaluate": variant.evaluate.model_copy(update={"meteor": False})})
            t0 = time.perf_counter()
            done = run_until(split_pipeline_config(variant, world, SPLIT), dd, "evaluate")
            m, _ = variant_metrics(world, done["evaluate"], done["generate"], SPLIT)
            info = done["train"].manifest().info
            row = {"variant": name, "steps": steps, "seconds": round(time.perf_counter() - t0, 1),
                   "val_loss_last": info.get("val_loss_last"), **{k: round(m[k], 4) for k in SHOWN if k in m}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"split": SPLIT, "rows": rows}, indent=2))
    lines = ["| variant | steps | val loss | " + " | ".join(SHOWN) + " |", "|---" * (3 + len(SHOWN)) + "|"]
    lines += [f"| {r['variant']} | {r['steps']} | {r['val_loss_last']} | " + " | ".join(f"{r[k]:.3f}" for k in SHOWN)
              + " |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
