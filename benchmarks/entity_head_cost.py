"""What the entity head's size and fit length cost and buy, on the world's VALIDATION split (issue 20).

The demo fits one entity head per variant that trains on its own queries (full, no_correction, no_noise,
paired_oracle): ~60 s on one core each, a quarter of what ``make demo`` spends before its decoders train.
Here the ``full`` variant's head is fitted with several widths / step counts on the same rows, noise and seed
as the train stage fits it, and its hints (count_rule of the config) are scored on the validation images as
the demo scores captions (attribute F1, count right), with a paired bootstrap against the committed setting.
Nothing here reads the test or novel splits. Seconds are one fit each, one thread, in this process (context;
compare them within one run only).

    nice -n 5 .venv/bin/python benchmarks/entity_head_cost.py --root DATA_DIR \
        --out benchmarks/results/entity_head_cost.json --try h256:hidden=256 --try s2000:steps=2000
"""
from __future__ import annotations

import json
import time

import numpy as np
from _demo_world import demo_arguments

SPLIT = "val"
DRAWS = 2000


def parse_try(text: str) -> tuple[str, dict[str, int]]:
    """``name:field=value,field=value`` (fields of ``train.model.entities``, integers)."""
    name, _, body = text.partition(":")
    return name, {k: int(v) for k, v in (kv.split("=") for kv in body.split(",") if kv)}


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--try", dest="tries", action="append", default=[], type=parse_try,
                    help="name:hidden=256,steps=2000,count_steps=1000 (entity fields); the committed one always runs")
    args = ap.parse_args(argv)

    import torch
    from _demo_world import full_variant
    from hint_rules import hint_scores

    from tomcap.demo.attributes import load_scene_truth
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.embed.store import EmbeddingSet
    from tomcap.generate.stage import coco_ids_by_file
    from tomcap.gapmath import correct_text
    from tomcap.model.adaptor import build_adaptor
    from tomcap.model.entities import hint_texts
    from tomcap.pipeline import reusable, run_until
    from tomcap.train import stage
    from tomcap.train.data import BatchBuilder, TrainData
    from tomcap.train.entity_glue import _fit, resolve_entities
    from tomcap.world.stage import world_artifact_paths

    torch.set_num_threads(1)
    dd = str(args.root)
    world, base = full_variant(args.config, dd)
    refs = run_until(base, dd, "gap")
    refs = run_until(base, dd, "index", refs)
    scfg = split_pipeline_config(base, world, SPLIT)
    imgs = EmbeddingSet.open(run_until(scfg, dd, "test_images", reusable(base, refs, scfg))["test_images"])
    emb = np.asarray(imgs.array(), np.float32)
    paths = world_artifact_paths(world)
    by_id = load_scene_truth(paths.split(SPLIT).scenes)
    truth = [by_id[i] for i in coco_ids_by_file(paths.split(SPLIT).annotations, imgs.ids["file"].to_list())]
    sizes = np.array([len(t["objects"]) for t in truth])

    # The train stage's inputs, as _train_into reads them (the head fit reads no retrieval).
    cfg = base.train
    df, embeddings, text_emb = stage._corpus_and_embeddings(refs["corpus"], refs["embed"])
    stats = stage._gap_stats(refs["gap"], text_emb, cfg)
    retrieval, exclude = stage._retrieval(refs["index"], df, embeddings, text_emb)
    train_rows, _ = stage.split_rows(df.height, cfg)
    data = TrainData(df["text"], embeddings, exclude, None).subset(train_rows)
    model_cfg = cfg.model.model_copy(update={"clip_dim": text_emb.dim})
    model_cfg, vocab = resolve_entities(model_cfg)
    labels = vocab.labels(data.texts.to_list() if hasattr(data.texts, "to_list") else list(data.texts))

    def correct(e):
        return correct_text(e, stats, renormalize=cfg.renormalize)

    rows, per_image = [], {}
    for name, change in [("committed", {})] + args.tries:
        mc = model_cfg.model_copy(update={"entities": model_cfg.entities.model_copy(update=change)})
        resolved = cfg.model_copy(update={"model": mc})
        model = build_adaptor(mc, seed=cfg.seed)
        builder = BatchBuilder(model, resolved, data, retrieval, correct, stats.noise_std)
        t0 = time.perf_counter()
        info = _fit(model, labels, builder, resolved)
        seconds = time.perf_counter() - t0
        ents = mc.entities
        chosen = model.entities.predict(emb, ents.threshold, ents.max_entities, ents.count_rule)
        f1, right = hint_scores(hint_texts(ents.names, chosen), truth)
        per_image[name] = f1
        rows.append({"name": name, "hidden": ents.hidden, "steps": ents.steps, "count_hidden": ents.count_hidden,
                     "count_steps": ents.count_steps, "fit_s": round(seconds, 1),
                     "bce_last": info["head_losses"][-1], "hint_f1": round(float(f1.mean()), 4),
                     **{f"f1_{k}obj": round(float(f1[sizes == k].mean()), 4) for k in (1, 2, 3)},
                     "count_right": round(float(right.mean()), 4)})
        print(json.dumps(rows[-1]), flush=True)

    rng = np.random.default_rng(0)
    draws = rng.integers(len(emb), size=(DRAWS, len(emb)))
    for r in rows[1:]:
        diff = per_image[r["name"]] - per_image["committed"]
        lo, hi = np.percentile(diff[draws].mean(1), [2.5, 97.5])
        r["minus_committed"] = [round(float(diff.mean()), 4), round(float(lo), 4), round(float(hi), 4)]
    out = {"split": SPLIT, "images": len(emb), "count_rule": model_cfg.entities.count_rule, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    cols = ["hidden", "steps", "count_steps", "fit_s", "hint_f1", "f1_1obj", "f1_2obj", "f1_3obj", "count_right"]
    lines = [f"Entity head of the demo's full variant, hints scored on the `{SPLIT}` split ({len(emb)} images), "
             f"count_rule {out['count_rule']}; fit_s: one fit, one thread, this run.", "",
             "| setting | " + " | ".join(cols) + " | hint F1 - committed [95%] |", "|---" * (len(cols) + 2) + "|"]
    for r in rows:
        d = r.get("minus_committed")
        lines.append(f"| {r['name']} | " + " | ".join(str(r[c]) for c in cols)
                     + (f" | {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}] |" if d else " | |"))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
