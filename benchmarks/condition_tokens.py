"""How many cross-attention states each CLIP embedding becomes (``train.model.condition_tokens``), chosen on the
world's VALIDATION split (issue 20).

With one state per embedding (query + k retrieved), each cross-attention head can only weigh the query
against the retrieved captions, the same mix at every caption position: the decoder learnt colours slowly
(a purple diamond became "a big pink circle"). This trains the demo's ``full`` variant (``configs/demo.yaml``
as committed, only ``condition_tokens`` changed) for each value and scores validation with the committed
decoding: the demo's metrics, plus the share of single-object scenes whose caption names exactly the object's
colour and shape (the rule of ``tests/test_caption_single_objects.py``) and the same share for the nearest
retrieved caption. Nothing here reads the test or novel splits.

    nice -n 5 .venv/bin/python benchmarks/condition_tokens.py --root /tmp/tune \
        --out benchmarks/results/condition_tokens.json
"""
from __future__ import annotations

import json
import time
from _demo_world import demo_arguments

TOKENS = (1, 4, 8, 16)
SPLIT = "val"
SHOWN = ("CIDEr", "Bleu_4", "color_acc", "shape_acc", "attr_f1", "count_acc")


def single_object_rates(results: list[dict], retrieved: list[dict], scenes_file) -> tuple[int, float, float]:
    """(single-object scenes, share the caption names right, share the nearest caption names right)."""
    from tomcap.demo.attributes import load_scene_truth, names_exactly

    truth = load_scene_truth(scenes_file)
    ok = near = n = 0
    for res, ret in zip(results, retrieved):
        objects = truth[int(res["image_id"])]["objects"]
        if len(objects) != 1:
            continue
        n += 1
        ok += names_exactly(res["caption"], *objects[0])
        near += bool(ret["retrieved"]) and names_exactly(ret["retrieved"][0], *objects[0])
    return n, ok / max(1, n), near / max(1, n)


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=list(TOKENS))
    args = ap.parse_args(argv)

    from _demo_world import full_variant, train_and_score
    from tomcap.world.stage import world_artifact_paths

    dd = str(args.root)
    world, base = full_variant(args.config, dd)
    scenes = world_artifact_paths(world).split(SPLIT).scenes
    rows = []
    for m in args.tokens:
        train = base.train.model_copy(update={"model": base.train.model.model_copy(update={"condition_tokens": m})})
        cfg = base.model_copy(update={"train": train})
        t = time.perf_counter()
        refs, metrics, results, retrieved = train_and_score(cfg, dd, world, SPLIT)
        n, single, nearest = single_object_rates(results, retrieved, scenes)
        row = {"condition_tokens": m, "train_s": refs["train"].manifest().info.get("seconds"),
               "seconds": round(time.perf_counter() - t, 1), "single_objects": n, "single_right": round(single, 4),
               "nearest_single_right": round(nearest, 4), **{k: round(metrics[k], 4) for k in SHOWN if k in metrics}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {"split": SPLIT, "config": str(args.config), "decode": base.generate.decode.model_dump(mode="json"),
           "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    lines = ["| condition_tokens | single objects named right | nearest caption, same | " + " | ".join(SHOWN) + " |",
             "|---" * (3 + len(SHOWN)) + "|"]
    lines += [f"| {r['condition_tokens']} | {r['single_right']:.3f} | {r['nearest_single_right']:.3f} | "
              + " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in SHOWN) + " |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
