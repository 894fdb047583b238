"""Where multi-object captions lose their bindings (issue 20), on the world's VALIDATION split: the trained
``full`` variant captions each image from (a) its CLIP image embedding, as at inference, (b) the gap-corrected
CLIP text embedding of one of its reference captions - what training feeds the decoder, less the noise - and
(c) that text embedding uncorrected. Attribute F1 per number of objects in the scene. If (b) is as poor as
(a) on multi-object scenes, the decoder cannot read the bindings even from text, and neither the modality gap
nor the CLIP image tower is what loses them. The ``nearest`` rows bound what the embeddings hold: the corpus
caption closest to the image embedding (the nearest_caption baseline) and to the reference's own text
embedding (if even that names the wrong pairs, the CLIP text tower does not keep them apart).

    nice -n 5 .venv/bin/python benchmarks/reconstruction.py --root /tmp/tune \\
        --out benchmarks/results/reconstruction.json \\
        --try committed --try mlp:train.model.mapper_hidden=1536
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from _demo_world import demo_arguments
from tune_adaptor import apply, parse_try

SPLIT = "val"
INPUTS = ("image", "text_corrected", "text_raw")


def f1_by_objects(captions: list[str], ids: list[int], truth: dict) -> dict[int, float]:
    from tomcap.demo.attributes import caption_scores

    by: dict[int, list[float]] = defaultdict(list)
    for i, cap in zip(ids, captions):
        by[len(truth[i]["objects"])].append(caption_scores(cap, truth[i])["attr_f1"])
    return {n: round(float(np.mean(v)), 4) for n, v in sorted(by.items())}


def reference_of_each_image(annotations: Path, files: list[str]) -> tuple[list[int], list[str]]:
    """(image id, first reference caption) of each image file, in the embedding artifact's order."""
    ann = json.loads(annotations.read_text(encoding="utf-8"))
    by_file = {im["file_name"]: im["id"] for im in ann["images"]}
    first: dict[int, str] = {}
    for a in ann["annotations"]:
        first.setdefault(a["image_id"], a["caption"])
    ids = [by_file[Path(f).name] for f in files]
    return ids, [first[i] for i in ids]


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--try", dest="tries", action="append", default=[], help="name[:dotted.field=value;...]")
    args = ap.parse_args(argv)

    from _demo_world import full_variant
    from tomcap.demo.attributes import load_scene_truth
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.embed.config import ImageEmbedConfig
    from tomcap.embed.stage import clip_for
    from tomcap.embed.store import EmbeddingSet
    from tomcap.embed.text import encode_texts
    from tomcap.gapmath import correct_text, load_stats
    from tomcap.generate.session import CaptionSession
    from tomcap.index import Datastore
    from tomcap.pipeline import reusable, run_until
    from tomcap.world.stage import world_artifact_paths

    dd = str(args.root)
    world, base = full_variant(args.config, dd)
    paths = world_artifact_paths(world).split(SPLIT)
    truth = load_scene_truth(paths.scenes)
    rows, nearest = [], {}
    for spec in args.tries or ["committed"]:
        name, changes = parse_try(spec)
        cfg = apply(base, changes)
        refs = run_until(cfg, dd, "train")
        scfg = split_pipeline_config(cfg, world, SPLIT)
        imgs = EmbeddingSet.open(run_until(scfg, dd, "test_images", reusable(cfg, refs, scfg))["test_images"])
        clip_cfg = ImageEmbedConfig.model_validate(imgs.ref.manifest().config)
        session = CaptionSession.open(scfg.generate, refs["train"], refs["index"], clip_cfg, imgs.model_fingerprint)
        ids, texts = reference_of_each_image(paths.annotations, imgs.ids["file"].to_list())
        image = np.asarray(imgs.array(), np.float32)
        raw = encode_texts(clip_for(clip_cfg), texts, precision=clip_cfg.precision, progress=False)
        corrected = np.asarray(correct_text(raw, load_stats(refs["gap"].dir)), np.float32)
        row: dict[str, object] = {"try": name, "changes": {k: str(v) for k, v in changes.items()},
                                  "cos_image_corrected_text": round(float((image * corrected).sum(1).mean()), 4),
                                  "cos_image_text": round(float((image * raw).sum(1).mean()), 4)}
        for label, emb in zip(INPUTS, (image, corrected, raw)):
            caps, _ = session.caption_all(emb, progress=False)
            row.update({f"{label}_f1_{n}obj": f for n, f in f1_by_objects([c.text for c in caps], ids, truth).items()})
        if not nearest:  # the datastore and the embeddings are the same for every try
            store = Datastore.open(refs["index"])
            for label, emb in (("by image", image), ("by reference text", raw)):
                top1 = [store.texts(r)[0] for r in store.search(emb, 1).rows]
                nearest[label] = {f"{n}obj": f for n, f in f1_by_objects(top1, ids, truth).items()}
        print(json.dumps(row), flush=True)
        rows.append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"split": SPLIT, "config": str(args.config), "rows": rows,
                                        "nearest_corpus_caption_f1": nearest}, indent=2))
    cols = [k for k in rows[0] if k.endswith("obj")]
    lines = ["| try | " + " | ".join(c.replace("_f1_", " F1, ") for c in cols) + " |", "|---" * (1 + len(cols)) + "|"]
    lines += [f"| {r['try']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |" for r in rows]
    lines += ["", "| nearest corpus caption | " + " | ".join(nearest["by image"]) + " |",
              "|---" * (1 + len(nearest["by image"])) + "|"]
    lines += [f"| {label} | " + " | ".join(f"{f:.3f}" for f in v.values()) + " |" for label, v in nearest.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
