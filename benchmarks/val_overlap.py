"""Which evaluation scenes the shipped world GPT-2 was pretrained on, and whether that explains why retrieval leads
on validation but not on test (issue 20).

The world GPT-2 shipped until 2026-12-07 (weights e004d5c2bd1ebdea) was trained (2026-11-24) before the validation
and novel splits existed: its training scenes skip the test split's keys only (``results/val_overlap.md``). The one
shipped since skips every evaluation split; for its record the rebuild uses today's ``test_keys``, and part 1 finds
no overlap. Its ``training_record.json`` holds what rebuilds that scene list
(seed, scene count, the world config of the day: the first ``n_test_images`` scenes of the test stream were
skipped); the rebuild is checked against the record's caption count. Part 1 counts, per evaluation split and number
of objects, the scenes whose key (background + every object's colour, shape, size and position) occurs among them.
No model runs.

Part 2 (``--root``: a data dir where the demo's ``full`` and ``no_retrieval`` variants are trained, e.g. the one of
``retrieval_value.py``; cached stages are reused) splits full - no_retrieval CIDEr per training seed by those
groups on ``val`` and ``test``. Single-object scenes are most of the seen ones, so it also splits by number of
objects, which compares seen val scenes with unseen test scenes of the same kind.

    .venv/bin/python benchmarks/val_overlap.py --out benchmarks/results/val_overlap.json
    nice -n 5 .venv/bin/python benchmarks/val_overlap.py --root /work/val --seeds 0 1 2 \\
        --out benchmarks/results/val_overlap.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from _demo_world import DEMO_CONFIG

SPLITS = ("val", "test", "novel")
DELTA_SPLITS = ("val", "test")
GPT2_RECORD = Path(__file__).resolve().parents[1] / "data" / "models" / "tomcap-world-gpt2" / "training_record.json"


def pretraining_keys(record_file: Path) -> set:
    """Scene keys of the world GPT-2's training captions, rebuilt as its training code of the day drew them."""
    from tomcap.world.config import WorldConfig
    from tomcap.world.scenes import scene_stream
    from tomcap.world.splits import TEST_STREAM, test_keys
    from tomcap.world.train_gpt2 import TRAIN_STREAM

    record = json.loads(record_file.read_text(encoding="utf-8"))
    cfg, world = record["train_config"], record["world_config"]
    if "n_val_images" in world:  # trained by today's code: every evaluation split's keys skipped
        skipped = test_keys(WorldConfig(**world))
    else:  # the 11-24 weights: the first n_test_images scenes of the test stream only
        skipped = {s.key() for s in scene_stream(world["seed"], TEST_STREAM, world["n_test_images"],
                                                 world["max_objects"], world["single_object_share"])}
    scenes = [s for s in scene_stream(cfg["seed"], TRAIN_STREAM, cfg["n_train_scenes"], world["max_objects"],
                                      world["single_object_share"]) if s.key() not in skipped]
    if len(scenes) * world["captions_per_image"] != record["n_world_captions"]:
        raise SystemExit(f"the rebuilt scene list gives {len(scenes) * world['captions_per_image']} captions, the "
                         f"record says {record['n_world_captions']}: the scene generator changed since")
    return {s.key() for s in scenes}


def groups_by_image(scenes: list, world_ref, split: str, seen_keys: set) -> dict[str, tuple[bool, int]]:
    """image id -> (scene seen in pretraining, number of objects); ``scenes``: the split's, in its order."""
    from tomcap.world.stage import world_artifact_paths

    path = world_artifact_paths(world_ref).split(split).scenes
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [r["scene_id"] for r in rows] != [s.scene_id for s in scenes]:
        raise SystemExit(f"{path} does not list the {split} scenes of {DEMO_CONFIG.name}'s world")
    return {str(r["image_id"]): (s.key() in seen_keys, len(s.objects)) for r, s in zip(rows, scenes)}


def counts(scenes: dict[str, list], seen_keys: set) -> list[dict]:
    out = []
    for split in SPLITS:
        row: dict = {"split": split}
        for s in scenes[split]:
            n = f"{len(s.objects)}obj"
            row.setdefault(n, [0, 0])
            row[n][0] += 1
            row[n][1] += int(s.key() in seen_keys)
        row["scenes"] = sum(v[0] for k, v in row.items() if k.endswith("obj"))
        row["seen"] = sum(v[1] for k, v in row.items() if k.endswith("obj"))
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def deltas(root: Path, seeds: list[int], scenes: dict[str, list], seen_keys: set) -> list[dict]:
    from _demo_world import paired_by_image, scoring_setup, variant_runs

    world, wired = scoring_setup(DEMO_CONFIG, str(root))
    subsets = {"all": lambda g: True, "seen": lambda g: g[0], "unseen": lambda g: not g[0],
               "1 object": lambda g: g[1] == 1, "2-3 objects": lambda g: g[1] > 1}
    rows = []
    for split in DELTA_SPLITS:
        group = groups_by_image(scenes[split], world, split, seen_keys)
        for seed in seeds:
            got, _ = variant_runs(world, wired, str(root), seed, split, ("full", "no_retrieval"))
            a, b = got["full"][1]["CIDEr"], got["no_retrieval"][1]["CIDEr"]
            for label, keep in subsets.items():
                ids = sorted(i for i in a if i in b and keep(group[i]))
                if ids:
                    rows.append({"split": split, "seed": seed, "images": label, "n": len(ids),
                                 "delta_CIDEr": paired_by_image(a, b, ids)})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(out: dict) -> str:
    lines = ["# Evaluation scenes in the world GPT-2's pretraining, and retrieval's lead by group", "",
             "Written by `benchmarks/val_overlap.py`. A scene is *seen* when its key (background + each object's "
             "colour, shape, size, position) occurs among the scenes whose captions trained the shipped "
             "`tomcap-world-gpt2`.", "",
             "| split | scenes | seen | 1 object (seen) | 2 objects (seen) | 3 objects (seen) |",
             "|---|---|---|---|---|---|"]
    for r in out["counts"]:
        cells = [f"{r[k][0]} ({r[k][1]})" if k in r else "-" for k in ("1obj", "2obj", "3obj")]
        lines.append(f"| {r['split']} | {r['scenes']} | {r['seen']} | " + " | ".join(cells) + " |")
    if out.get("deltas"):
        lines += ["", "full − no_retrieval CIDEr (paired 95% bootstrap over the group's images), per training seed:",
                  "",
                  "| split | images | n | " + " | ".join(f"seed {s}" for s in out["seeds"]) + " | mean |",
                  "|---|---|---|" + "---|" * (len(out["seeds"]) + 1)]
        keys = dict.fromkeys((r["split"], r["images"], r["n"]) for r in out["deltas"])
        for split, images, n in keys:
            got = [r["delta_CIDEr"] for r in out["deltas"] if (r["split"], r["images"]) == (split, images)]
            cells = [f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" for d in got]
            lines.append(f"| {split} | {images} | {n} | " + " | ".join(cells)
                         + f" | {sum(d['mean'] for d in got) / len(got):+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="data dir with the trained variants (part 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from _demo_world import write_results
    from tomcap.settings import load_pipeline_config
    from tomcap.world.splits import split_scenes

    world_cfg = load_pipeline_config(DEMO_CONFIG).world
    scenes = {split: split_scenes(world_cfg, split) for split in SPLITS}
    seen = pretraining_keys(GPT2_RECORD)
    out = {"gpt2_record": GPT2_RECORD.name, "counts": counts(scenes, seen), "seeds": args.seeds}
    if args.root is not None:
        out["deltas"] = deltas(args.root, args.seeds, scenes, seen)
    write_results(args.out, out, markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
