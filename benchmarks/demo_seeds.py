"""Training seeds of the demo's ablation claims (issue 20): full vs no_correction / no_noise / no_retrieval.

Trains each variant with ``train.seed`` in --seeds (0 is the demo's own run; with the same --root it is
served from cache) on configs/demo.yaml as committed, captions and scores --split, and reports CIDEr and
attr_f1 per seed, the paired bootstrap difference full - variant per seed (95%, same images), and whether
full beats each ablation in every seed. The claims are made on ``test`` (nothing is chosen from it);
``--split val`` re-checks the committed config on validation, e.g. after a shipped model changes.
METEOR is left out (it does not enter these numbers).

    nice -n 5 .venv/bin/python benchmarks/demo_seeds.py --root DATA_DIR --out benchmarks/results/demo_seeds.json
    # two processes side by side on one root (the shared stages first), then once more to gather the table:
    ... demo_seeds.py --split val --variants full no_retrieval --root R --out /tmp/a.json &
    ... demo_seeds.py --split val --variants no_noise no_correction --root R --out /tmp/b.json
"""
from __future__ import annotations

import json
import time
from _demo_world import demo_arguments

VARIANTS = ("full", "no_correction", "no_noise", "no_retrieval")
METRICS = ("CIDEr", "attr_f1")


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--split", choices=("test", "val", "novel"), default="test")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = ap.parse_args(argv)

    from _demo_world import paired_by_image, scoring_setup, variant_runs, write_results

    dd = str(args.root)
    # As flows/demo.py: the shared stages at the process's full thread budget, then every variant as one of
    # its pool workers runs it (one thread). The thread count moves float sums by an ulp, and a seed trained
    # at another count would not be the demo's run.
    world, wired = scoring_setup(args.config, dd)
    names = [n for n in VARIANTS if n in args.variants]
    table: dict[str, dict[str, dict]] = {}
    per_image: dict[str, dict[str, dict]] = {}
    for seed in args.seeds:
        for name in names:
            t0 = time.perf_counter()
            got, _ = variant_runs(world, wired, dd, seed, args.split, (name,))
            m, by_image, _ = got[name]
            per_image.setdefault(name, {})[str(seed)] = by_image
            table.setdefault(name, {})[str(seed)] = {k: round(m[k], 4) for k in METRICS}
            print(json.dumps({"seed": seed, "variant": name, **table[name][str(seed)],
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    paired = {}
    if "full" in names:
        for name in names[1:]:
            for s in map(str, args.seeds):
                paired.setdefault(name, {})[s] = {m: paired_by_image(per_image["full"][s][m], per_image[name][s][m])
                                                  for m in METRICS}
    verdict = {name: {m: all(table["full"][s][m] > table[name][s][m] for s in table["full"]) for m in METRICS}
               for name in paired}
    out = {"split": args.split, "seeds": args.seeds, "per_seed": table, "full_minus_variant": paired,
           "full_beats_in_every_seed": verdict}
    lines = [f"Split `{args.split}`.", "",
             "| variant | " + " | ".join(f"{m} seed {s}" for m in METRICS for s in args.seeds) + " |",
             "|---" * (1 + len(METRICS) * len(args.seeds)) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{table[name][str(s)][m]:.3f}" for m in METRICS for s in args.seeds)
                     + " |")
    if paired:
        lines += ["", "full - variant, paired 95% bootstrap over the split's images:", "",
                  "| variant | seed | CIDEr | attr_f1 |", "|---|---|---|---|"]
        for name, by_seed in paired.items():
            for s, d in by_seed.items():
                lines.append(f"| {name} | {s} | " + " | ".join(
                    f"{d[m]['mean']:+.3f} [{d[m]['lo']:+.3f}, {d[m]['hi']:+.3f}]" for m in METRICS) + " |")
        lines += ["", "full > variant in every seed: " + ", ".join(
            f"{n}: " + "/".join(f"{m} {'yes' if v[m] else 'no'}" for m in METRICS) for n, v in verdict.items())]
    write_results(args.out, out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
