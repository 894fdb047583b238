"""What retrieval gives the demo's captioner (issue 20), on the world's VALIDATION split. Four measurements:

1. ``seeds``: full vs no_retrieval in training seeds 0..2 (the demo config as committed; paired bootstrap).
2. ``facets``: what the nearest caption gets right (size, grid position, background, colour-shape objects) against
   what full and no_retrieval say, per facet (seed 0); also the caption two other retrievals pick.
3. ``training``: the same for the caption training retrieves for each corpus caption (the noised, gap-corrected
   text query with the caption's own image excluded, as ``train`` builds its batches), against that caption.
   Retrieval that is much better in training than at captioning would teach the decoder to copy it.
4. ``oracle``: the seed-0 full adaptor, unchanged, captioning with datastores that also hold the own reference
   captions of a seeded share (0, 1/4, 1/2, all) of the validation images. How often the top-1 is one of them,
   how often the caption repeats it, the CIDEr it reaches (on the images in the store and on the others) and its
   paired gain over no_retrieval, with and without the consensus rerank. It tells 'the datastore has nothing
   better to give' from 'the decoder does not take what it is given', and shows retrieval's gain as a function
   of what the datastore holds (as the gap sweep shows the correction's as a function of the gap).

Nothing here reads the test or novel splits; nothing is chosen from it.

    nice -n 5 .venv/bin/python benchmarks/retrieval_value.py --root DATA_DIR \\
        --out benchmarks/results/retrieval_value_val.json
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from _demo_world import demo_arguments

SPLIT = "val"
VARIANTS = ("full", "no_retrieval")
ORACLE_SOURCE = "val_references"
TRAINING_SAMPLE = 3000
HINT_SEARCH = 128
ORACLE_SHARES = (0.0, 0.25, 0.5, 1.0)
ORACLE_SEED = 0
ORACLE_DIR = Path("work") / "retrieval_value"
"""Where the val reference files of the oracle datastores are written, under --root."""
FACETS = ("attr_f1", "size", "position", "background")


def facet_scores(caption: str, objects: list[tuple[str, str]], sizes: set[str], positions: set[str],
                 background: str | None) -> dict[str, float]:
    """Attribute F1 of the (colour, shape) objects; precision of the size words and grid positions named; whether
    a named background is right. A facet the caption does not name is left out (nan), not counted wrong."""
    from tomcap.demo.attributes import caption_scores
    from tomcap.world.captions import parse_caption

    truth = {"colors": {c for c, _ in objects}, "shapes": {s for _, s in objects}, "objects": objects}
    p = parse_caption(caption)
    out = {"attr_f1": caption_scores(caption, truth)["attr_f1"]}
    for name, got, want in (("size", p.sizes, sizes), ("position", p.positions, positions)):
        out[name] = len(got & want) / len(got) if got else np.nan
    out["background"] = float(p.background == background) if p.background and background else np.nan
    return out


def scene_truth(scenes_file) -> dict[str, dict]:
    out = {}
    for line in open(scenes_file, encoding="utf-8"):
        s = json.loads(line)
        out[str(s["image_id"])] = {"objects": [(o["color"], o["shape"]) for o in s["objects"]],
                                   "sizes": {o["size"] for o in s["objects"]},
                                   "positions": {o["position"] for o in s["objects"]}, "background": s["background"]}
    return out


def caption_truth(caption: str) -> dict:
    """A corpus caption read as the truth of its scene (training has captions, not scenes)."""
    from tomcap.demo.attributes import named_objects
    from tomcap.world.captions import parse_caption

    p = parse_caption(caption)
    return {"objects": named_objects(caption), "sizes": set(p.sizes), "positions": set(p.positions),
            "background": p.background}


def mean_facets(pairs: list[tuple[str, dict]]) -> dict[str, float]:
    rows = [facet_scores(c, **t) for c, t in pairs]
    return {f: round(float(np.nanmean([r[f] for r in rows])), 4) for f in FACETS}


def seeds_section(world, wired, dd: str, seeds: list[int]):
    from _demo_world import paired_by_image, variant_runs

    rows, seed0 = [], {}
    for seed in seeds:
        got, variants = variant_runs(world, wired, dd, seed, SPLIT, VARIANTS)
        row = {"seed": seed, **{f"{n}_{m}": round(got[n][0][m], 4) for n in VARIANTS for m in ("CIDEr", "attr_f1")}}
        for m in ("CIDEr", "attr_f1"):
            row[f"delta_{m}"] = paired_by_image(got["full"][1][m], got["no_retrieval"][1][m])
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("delta")}), flush=True)
        if seed == seeds[0]:
            seed0 = {n: got[n][2] for n in VARIANTS} | {"config": variants["full"],
                                                        "no_retrieval_cider": got["no_retrieval"][1]["CIDEr"]}
    return rows, seed0


def read_json(ref, name: str):
    return json.loads(ref.file(name).read_text(encoding="utf-8"))


def facets_section(done: dict, truth: dict[str, dict], annotations: Path) -> dict[str, dict[str, float]]:
    """``annotations``: the split's COCO file (the embeddings are keyed by image file, the truth by image id)."""
    out = {}
    for name in VARIANTS:
        out[name] = mean_facets([(r["caption"], truth[str(r["image_id"])])
                                 for r in read_json(done[name]["generate"], "results.json")])
    retrieved = read_json(done["full"]["generate"], "retrieved.json")
    out["nearest caption"] = mean_facets([(r["retrieved"][0], truth[str(r["image_id"])]) for r in retrieved])
    out.update(other_retrievals(done["full"], retrieved, truth, annotations))
    return out


def other_retrievals(full: dict, retrieved: list[dict], truth: dict[str, dict],
                     annotations: Path) -> dict[str, dict[str, float]]:
    """Two other ways to pick the caption: the image embedding moved into text space before the search (the
    correction's inverse), and the nearest of HINT_SEARCH captions that names exactly the hinted entities."""
    from tomcap.demo.attributes import named_objects
    from tomcap.embed.store import EmbeddingSet
    from tomcap.gapmath import l2_normalize, load_stats
    from tomcap.generate.stage import coco_ids_by_file
    from tomcap.index.datastore import Datastore

    images = EmbeddingSet.open(full["test_images"])
    ids = [str(i) for i in coco_ids_by_file(annotations, images.ids["file"].to_list())]
    x = images.array()
    stats = load_stats(full["gap"].dir)
    store = Datastore.open(full["index"])
    to_text = l2_normalize((x - stats.mu_i) * (stats.sigma_t / stats.sigma_i) + stats.mu_t).astype(np.float32)
    top = [store.texts(r)[0] for r in store.search(to_text, 1).rows]
    hints = {str(r["image_id"]): sorted(r["entities"].split(", ")) for r in retrieved if r.get("entities")}
    picked = []
    for i, rows in zip(ids, store.search(np.asarray(x, np.float32), HINT_SEARCH).rows):
        near = store.texts(rows)
        picked.append(next((t for t in near if sorted(f"{c} {s}" for c, s in named_objects(t)) == hints.get(i)),
                           near[0]))
    return {"nearest caption, query moved to text space": mean_facets([(t, truth[i]) for t, i in zip(top, ids)]),
            f"nearest of {HINT_SEARCH} naming the hinted entities": mean_facets(
                [(t, truth[i]) for t, i in zip(picked, ids)])}


def training_section(train_cfg, refs: dict) -> dict[str, float]:
    """Top-1 retrieved caption of a seeded sample of corpus captions, built as a training batch builds it."""
    from tomcap.gapmath import correct_text
    from tomcap.train.data import add_noise
    from tomcap.train.stage import _corpus_and_embeddings, _gap_stats, _retrieval

    df, embeddings, emb = _corpus_and_embeddings(refs["corpus"], refs["embed"])
    stats = _gap_stats(refs["gap"], emb, train_cfg)
    retrieval, exclude = _retrieval(refs["index"], df, embeddings, emb)
    texts = df["text"].to_list()
    rng = np.random.default_rng([train_cfg.seed, 7])
    idx = np.sort(rng.choice(len(texts), min(TRAINING_SAMPLE, len(texts)), replace=False))
    query = np.asarray(correct_text(embeddings[idx].astype(np.float32), stats, renormalize=train_cfg.renormalize))
    query = add_noise(query, stats.noise_std, train_cfg.noise_scale_query, rng, train_cfg.renormalize)
    rows = retrieval.search(query, 1, [exclude[i] for i in idx])
    got = retrieval.texts(rows.ravel())
    return mean_facets([(g, caption_truth(texts[i])) for g, i in zip(got, idx)])


def oracle_section(world, full_cfg, done_full: dict, no_retrieval: dict[str, float], dd: str,
                   weights: list[float]) -> list[dict]:
    """The seed-0 full adaptor with datastores that also hold the references of a seeded share of the val images;
    ``no_retrieval``: that variant's per-image CIDEr, for the paired gain."""
    from tomcap.corpus.config import SourceConfig
    from tomcap.demo.report import variant_metrics
    from tomcap.demo.splits import split_pipeline_config
    from _demo_world import paired_by_image
    from tomcap.pipeline import run_until
    from tomcap.world.stage import world_artifact_paths

    annotations = world_artifact_paths(world).split(SPLIT).annotations
    coco = json.loads(annotations.read_text(encoding="utf-8"))
    refs: dict[str, set[str]] = {}
    for a in coco["annotations"]:
        refs.setdefault(str(a["image_id"]), set()).add(a["caption"])
    order = np.random.default_rng(ORACLE_SEED).permutation(sorted(refs))
    folder = Path(dd) / ORACLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for share in ORACLE_SHARES:
        inside = set(order[:round(share * len(order))].tolist())
        index = done_full["index"]
        if inside:
            part = folder / f"{ORACLE_SOURCE}_{round(100 * share)}.json"
            part.write_text(json.dumps({**coco, "annotations": [a for a in coco["annotations"]
                                                                 if str(a["image_id"]) in inside]}), encoding="utf-8")
            cfg = full_cfg.model_copy(update={"corpus": full_cfg.corpus.model_copy(update={
                "sources": [*full_cfg.corpus.sources, SourceConfig(path=part, name=ORACLE_SOURCE)]})})
            index = run_until(cfg, dd, "index")["index"]
        for w in weights:
            cfg = full_cfg.model_copy(update={"generate": full_cfg.generate.model_copy(
                update={"consensus_weight": w})})
            done = run_until(split_pipeline_config(cfg, world, SPLIT), dd, "evaluate",
                             {"train": done_full["train"], "index": index})
            metrics, per_image = variant_metrics(world, done["evaluate"], done["generate"], SPLIT)
            results = {str(r["image_id"]): r["caption"] for r in read_json(done["generate"], "results.json")}
            retrieved = read_json(done["generate"], "retrieved.json")
            n = len(retrieved)
            cider = per_image["CIDEr"]
            ids = sorted(set(cider) & set(no_retrieval))
            gain = paired_by_image(cider, no_retrieval, ids)
            rows.append({"share_in_store": share, "consensus_weight": w, "CIDEr": round(metrics["CIDEr"], 4),
                         "attr_f1": round(metrics["attr_f1"], 4), "vs_no_retrieval": gain,
                         "CIDEr_in_store": round(float(np.mean([cider[i] for i in ids if i in inside])), 4)
                         if inside else None,
                         "CIDEr_not_in_store": round(float(np.mean([cider[i] for i in ids if i not in inside])), 4)
                         if len(inside) < len(ids) else None,
                         "top1_is_own_reference": round(sum(r["retrieved"][0] in refs[str(r["image_id"])]
                                                            for r in retrieved) / n, 4),
                         "caption_repeats_top1": round(sum(results[str(r["image_id"])] == r["retrieved"][0]
                                                           for r in retrieved) / n, 4)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(out: dict) -> str:
    lines = [f"Split `{SPLIT}` (500 images); `configs/demo.yaml` as committed. Nothing here reads `test`.", "",
             "### Full vs no_retrieval over training seeds", "",
             "| seed | full CIDEr | no_retrieval CIDEr | Δ CIDEr [95% CI] | full attr F1 | no_retrieval attr F1 "
             "| Δ attr F1 [95% CI] |", "|---|---|---|---|---|---|---|"]
    for r in out["seeds"]:
        cells = [f"{r[f'delta_{m}']['mean']:+.3f} [{r[f'delta_{m}']['lo']:+.3f}, {r[f'delta_{m}']['hi']:+.3f}]"
                 for m in ("CIDEr", "attr_f1")]
        lines.append(f"| {r['seed']} | {r['full_CIDEr']:.3f} | {r['no_retrieval_CIDEr']:.3f} | {cells[0]} | "
                     f"{r['full_attr_f1']:.3f} | {r['no_retrieval_attr_f1']:.3f} | {cells[1]} |")
    lines += ["", "### What each source gets right (seed 0; precision of what it names, objects as F1)", "",
              "| source | attr F1 | size | grid position | background |", "|---|---|---|---|---|"]
    for name, f in out["facets"].items():
        lines.append(f"| {name} | " + " | ".join(f"{f[k]:.3f}" for k in FACETS) + " |")
    lines += ["", "### Oracle datastores (seed-0 full adaptor, unchanged): the corpus plus the references of a "
              "share of the val images", "",
              "| share of val images in the store | consensus weight | CIDEr | CIDEr, images in the store "
              "| not in the store | vs no_retrieval [95% CI] | attr F1 | top-1 is one of the image's references "
              "| caption repeats the top-1 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in out["oracle"]:
        g = r["vs_no_retrieval"]
        cells = [f"{r[k]:.3f}" if r[k] is not None else "-" for k in ("CIDEr_in_store", "CIDEr_not_in_store")]
        lines.append(f"| {r['share_in_store']:.2f} | {r['consensus_weight']} | {r['CIDEr']:.3f} | {cells[0]} | "
                     f"{cells[1]} | {g['mean']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}] | {r['attr_f1']:.3f} | "
                     f"{r['top1_is_own_reference']:.3f} | {r['caption_repeats_top1']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)

    from _demo_world import scoring_setup, write_results
    from tomcap.world.stage import world_artifact_paths

    dd = str(args.root)
    t0 = time.perf_counter()
    world, wired = scoring_setup(args.config, dd)
    seeds, seed0 = seeds_section(world, wired, dd, args.seeds)
    truth = scene_truth(world_artifact_paths(world).split(SPLIT).scenes)
    full = seed0["full"]
    out = {"split": SPLIT, "seeds": seeds,
           "facets": facets_section(seed0, truth, world_artifact_paths(world).split(SPLIT).annotations)}
    out["facets"]["training retrieval (vs the caption trained on)"] = training_section(
        seed0["config"].train, {k: full[k] for k in ("corpus", "embed", "gap", "index")})
    out["oracle"] = oracle_section(world, seed0["config"], full, seed0["no_retrieval_cider"], dd,
                                   [0.0, seed0["config"].generate.consensus_weight])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, out, markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
