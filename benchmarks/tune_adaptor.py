"""Adaptor and training settings tried on the world's VALIDATION split (issue 20): each ``--try`` trains the
demo's ``full`` variant (``configs/demo.yaml`` as committed, only the named fields changed) and scores
validation with the committed decoding, with the single-object rate of ``benchmarks/condition_tokens.py`` and
the attribute F1 per number of objects in the scene (the multi-object scenes are where captions fail).
Nothing here reads the test or novel splits.

    nice -n 5 .venv/bin/python benchmarks/tune_adaptor.py --root /tmp/tune --out benchmarks/results/tune_adaptor.json \
        --try committed --try r16:train.model.lora_rank=16 --try proj:train.model.lora_targets=c_attn,c_proj
"""
from __future__ import annotations

import json
import time
from collections import defaultdict

import yaml
from _demo_world import demo_arguments
from condition_tokens import single_object_rates

SPLIT = "val"
SHOWN = ("CIDEr", "Bleu_4", "color_acc", "shape_acc", "attr_f1", "count_acc")


def parse_try(spec: str) -> tuple[str, dict[str, object]]:
    """``name[:a.b=v;c.d=w]`` -> (name, {'a.b': v, ...}); values are YAML (``c_attn,c_proj`` becomes a list)."""
    name, _, rest = spec.partition(":")
    out: dict[str, object] = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        out[key] = value.split(",") if "," in value else yaml.safe_load(value)
    return name, out


def apply(cfg, dotted: dict[str, object]):
    """``cfg`` with each dotted field replaced, validated again as a whole; ``clip.*`` reaches every CLIP
    section and evaluate's CLIPScore model, as the demo wires them."""
    clip = {k.partition(".")[2]: v for k, v in dotted.items() if k.startswith("clip.")}
    if clip:
        cfg = cfg.with_clip(**clip)
        cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(
            update={f"clip_{k}": v for k, v in clip.items()})})
    d = cfg.model_dump()
    for key, value in dotted.items():
        if key.startswith("clip."):
            continue
        *parents, leaf = key.split(".")
        node = d
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise SystemExit(f"--try: no field '{key}' in the pipeline config")
        node[leaf] = value
    return type(cfg).model_validate(d)


def f1_by_objects(results: list[dict], scenes_file) -> dict[str, float]:
    from tomcap.demo.attributes import caption_scores, load_scene_truth

    truth = load_scene_truth(scenes_file)
    by: dict[int, list[float]] = defaultdict(list)
    for r in results:
        t = truth[int(r["image_id"])]
        by[len(t["objects"])].append(caption_scores(r["caption"], t)["attr_f1"])
    return {f"attr_f1_{n}obj": round(sum(v) / len(v), 4) for n, v in sorted(by.items())}


def hint_f1(retrieved: list[dict], scenes_file) -> float | None:
    """Attribute F1 of the entity hints themselves, read as a caption (the bound hint-guided decoding works under)."""
    from tomcap.demo.attributes import caption_scores, load_scene_truth

    if not retrieved or retrieved[0].get("entities") is None:
        return None
    truth = load_scene_truth(scenes_file)
    scores = [caption_scores(ret["entities"], truth[int(ret["image_id"])])["attr_f1"] for ret in retrieved]
    return round(sum(scores) / len(scores), 4)


def paired_lines(rows: list[dict], by_try: dict[str, dict], baseline: str) -> list[str]:
    """Markdown of try - baseline paired intervals; each row also gets them as ``paired_vs_<baseline>``."""
    from _demo_world import paired_by_image

    if baseline not in by_try:
        raise SystemExit(f"--baseline {baseline}: no try of that name")
    base = by_try[baseline]
    out = ["", f"Paired differences try - {baseline} ({SPLIT}, 95% bootstrap over the same images; 'yes' where the "
           "interval excludes 0):", "", "| try | ΔCIDEr | Δattr_f1 |", "|---|---|---|"]
    for r in rows:
        if r["try"] == baseline:
            continue
        cells, diffs = [], {}
        for m in ("CIDEr", "attr_f1"):
            d = paired_by_image(by_try[r["try"]][m], base[m])
            diffs[m] = d
            sep = "yes" if d["lo"] > 0 or d["hi"] < 0 else "no"
            cells.append(f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] {sep}")
        r[f"paired_vs_{baseline}"] = diffs
        out.append(f"| {r['try']} | " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--try", dest="tries", action="append", default=[], help="name[:dotted.field=value;...]")
    ap.add_argument("--baseline", help="a try's name: every other try gets the paired bootstrap difference "
                                       "(try - baseline, 95%%, 1000 draws) of CIDEr and attr_f1 over the same images")
    args = ap.parse_args(argv)

    from _demo_world import full_variant, train_and_score
    from tomcap.world.stage import world_artifact_paths

    dd = str(args.root)
    world, base = full_variant(args.config, dd)
    scenes = world_artifact_paths(world).split(SPLIT).scenes
    rows, by_try = [], {}
    for spec in args.tries or ["committed"]:
        name, changes = parse_try(spec)
        cfg = apply(base, changes)
        t = time.perf_counter()
        per_image: dict = {}
        refs, metrics, results, retrieved = train_and_score(cfg, dd, world, SPLIT, per_image)
        by_try[name] = per_image
        n, single, nearest = single_object_rates(results, retrieved, scenes)
        row = {"try": name, "changes": {k: str(v) for k, v in changes.items()},
               "train_s": refs["train"].manifest().info.get("seconds"), "seconds": round(time.perf_counter() - t, 1),
               "val_loss_last": refs["train"].manifest().info.get("val_loss_last"),
               "single_right": round(single, 4), "nearest_single_right": round(nearest, 4),
               **{k: round(metrics[k], 4) for k in SHOWN if k in metrics}, **f1_by_objects(results, scenes),
               "hint_f1": hint_f1(retrieved, scenes)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"split": SPLIT, "config": str(args.config), "rows": rows}, indent=2))
    cols = [*SHOWN, "attr_f1_1obj", "attr_f1_2obj", "attr_f1_3obj", "hint_f1"]
    lines = ["| try | changes | val loss | single objects right | " + " | ".join(cols) + " |",
             "|---" * (4 + len(cols)) + "|"]
    for r in rows:
        changes = "; ".join(f"{k}={v}" for k, v in r["changes"].items()) or "(committed)"
        loss = f"{r['val_loss_last']:.4f}" if r.get("val_loss_last") is not None else "-"
        lines.append(f"| {r['try']} | {changes} | {loss} | {r['single_right']:.3f} | "
                     + " | ".join(f"{r[k]:.3f}" if r.get(k) is not None else "-" for k in cols) + " |")
    if args.baseline:
        lines += paired_lines(rows, by_try, args.baseline)
        args.out.write_text(json.dumps({"split": SPLIT, "config": str(args.config), "rows": rows}, indent=2))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
