"""How the demo's entity hints are chosen, scored on the world's VALIDATION split (issue 20): the hints alone,
read as a caption, against the scene's objects (attribute F1, count right, per number of objects).

Rules compared on the same fitted heads of the demo's ``full`` variant (trained or served from --root's cache):
- ``head``: the count head's most probable count of the most probable entities (before count_rule existed);
- ``joint``: ``entities.count_rule: joint`` (``tomcap.model.entities.joint_counts``);
- ``knn``: the entity probabilities mixed with the entities of the datastore captions nearest the image
  (similarity-weighted vote of k neighbours, weight lam), a retrieval route into the hints;
- ``crops``: the head also run on crops of the image (a MacCap-style grid and overlapping windows), the entity
  scores the maximum over the image and its crops.
Nothing here reads the test or novel splits.

    nice -n 5 .venv/bin/python benchmarks/hint_rules.py --root DATA_DIR --out benchmarks/results/hint_rules.json
"""
from __future__ import annotations

import json
import numpy as np
from _demo_world import demo_arguments

SPLIT = "val"
KNN = [(k, lam) for k in (1, 4, 16, 32) for lam in (0.2, 0.35, 0.5)]
KNN_TEMPERATURE = 0.05
CROPS = {"grid 3x3": (1 / 3, 1 / 3), "grid 2x2": (1 / 2, 1 / 2), "windows 1/2 stride 1/4": (1 / 2, 1 / 4),
         "windows 2/3 stride 1/3": (2 / 3, 1 / 3)}
DRAWS = 2000


def windows(size: float, stride: float) -> list[tuple[float, float, float, float]]:
    """Square windows (left, top, right, bottom) as fractions of the image side."""
    starts = [i * stride for i in range(int(round((1 - size) / stride)) + 1)]
    return [(x, y, x + size, y + size) for y in starts for x in starts]


def hint_scores(lines: list[str], truth: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (attr_f1, count_acc) of its hint line read as a caption, as the demo scores captions."""
    from tomcap.demo.attributes import caption_scores

    scores = [caption_scores(line, t) for line, t in zip(lines, truth)]
    return np.array([s["attr_f1"] for s in scores]), np.array([s["count_acc"] for s in scores])


def main(argv: list[str] | None = None) -> int:
    args = demo_arguments(__doc__.splitlines()[0]).parse_args(argv)

    import torch
    from PIL import Image
    from _demo_world import full_variant

    from tomcap.demo.attributes import load_scene_truth
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.embed.config import ImageEmbedConfig
    from tomcap.embed.images import encode_images
    from tomcap.embed.stage import clip_for
    from tomcap.embed.store import EmbeddingSet
    from tomcap.generate.stage import coco_ids_by_file
    from tomcap.index import Datastore
    from tomcap.model import load_adaptor
    from tomcap.model.entities import EntityVocabulary, hint_texts, joint_counts
    from tomcap.pipeline import reusable, run_until
    from tomcap.world.stage import world_artifact_paths

    dd = str(args.root)
    world, base = full_variant(args.config, dd)
    refs = run_until(base, dd, "train")
    scfg = split_pipeline_config(base, world, SPLIT)
    imgs = EmbeddingSet.open(run_until(scfg, dd, "test_images", reusable(base, refs, scfg))["test_images"])
    emb = np.asarray(imgs.array(), np.float32)
    files = imgs.ids["file"].to_list()
    paths = world_artifact_paths(world)
    by_id = load_scene_truth(paths.split(SPLIT).scenes)
    truth = [by_id[i] for i in coco_ids_by_file(paths.split(SPLIT).annotations, files)]
    sizes = np.array([len(t["objects"]) for t in truth])
    model = load_adaptor(refs["train"].dir, device="cpu")
    head, ents = model.entities, model.config.entities
    vocab = EntityVocabulary.load(ents.vocabulary) if ents.vocabulary else None
    names = ents.names

    def probs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            return torch.sigmoid(head.net(t)).numpy(), torch.log_softmax(head.count(t), -1).numpy()

    p, count_logp = probs(emb)

    def joint(score: np.ndarray, logp: np.ndarray = count_logp) -> list[list[int]]:
        top = np.argsort(-score, 1, kind="stable")[:, :ents.max_entities]
        return [list(map(int, r[:n])) for r, n in zip(top, joint_counts(logp, np.take_along_axis(score, top, 1)))]

    rows, per_image = [], {}

    def add(rule: str, setting: str, chosen: list[list[int]]) -> None:
        v, right = hint_scores(hint_texts(names, chosen), truth)
        per_image[f"{rule} {setting}".strip()] = v
        rows.append({"rule": rule, "setting": setting, "hint_f1": round(float(v.mean()), 4),
                     **{f"f1_{k}obj": round(float(v[sizes == k].mean()), 4) for k in (1, 2, 3) if (sizes == k).any()},
                     "count_right": round(float(right.mean()), 4),
                     **{f"count_right_{k}obj": round(float(right[sizes == k].mean()), 4) for k in (1, 2, 3)
                        if (sizes == k).any()}})
        print(json.dumps(rows[-1]), flush=True)

    add("head", "", head.predict(emb, ents.threshold, ents.max_entities, "head"))
    add("joint", "", head.predict(emb, ents.threshold, ents.max_entities, "joint"))
    top_true = np.argsort(-p, 1, kind="stable")
    add("true count", "(not a rule: the scene's own count)", [list(map(int, r[:n])) for r, n in zip(top_true, sizes)])

    store = Datastore.open(refs["index"])
    found = store.search(emb, max(k for k, _ in KNN))
    labels = np.stack([vocab.labels(store.texts(r)) for r in found.rows]).astype(np.float32)  # (N, K, E)
    counts = np.clip(labels.sum(2), 1, count_logp.shape[1]).astype(int) - 1
    for k, lam in KNN:
        w = np.exp((found.scores[:, :k] - found.scores[:, :1]) / KNN_TEMPERATURE)
        w /= w.sum(1, keepdims=True)
        vote = (w[:, :, None] * labels[:, :k]).sum(1)
        cvote = np.stack([(w * (counts[:, :k] == c)).sum(1) for c in range(count_logp.shape[1])], 1)
        mixed_count = np.log((1 - lam) * np.exp(count_logp) + lam * cvote + 1e-9)
        add("knn", f"k={k} lam={lam}", joint((1 - lam) * p + lam * vote, mixed_count))

    clip = clip_for(ImageEmbedConfig.model_validate(imgs.ref.manifest().config))
    folder = paths.split(SPLIT).images_dir
    images = [Image.open(folder / f).convert("RGB") for f in files]
    for name, (size, stride) in CROPS.items():
        boxes = windows(size, stride)
        crops = [im.crop(tuple(round(v * im.size[0]) for v in b)) for im in images for b in boxes]
        crop_emb = encode_images(clip, crops, progress=False).embeddings.reshape(len(images), len(boxes), -1)
        pc, _ = probs(crop_emb)
        add("crops", f"{name} ({len(boxes)} crops), max", joint(np.maximum(p, pc.max(1))))

    rng = np.random.default_rng(0)
    diff = per_image["joint"] - per_image["head"]
    draws = [diff[rng.integers(len(diff), size=len(diff))].mean() for _ in range(DRAWS)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    paired = {"joint - head": {"mean": round(float(diff.mean()), 4),
                               "ci95": [round(float(lo), 4), round(float(hi), 4)]}}
    out = {"split": SPLIT, "images": len(files), "train": refs["train"].fingerprint, "rows": rows, "paired": paired}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    cols = ["hint_f1", "f1_1obj", "f1_2obj", "f1_3obj", "count_right", "count_right_1obj", "count_right_2obj",
            "count_right_3obj"]
    lines = [f"Hints alone as captions, `{SPLIT}` split ({len(files)} images), the demo's full variant "
             f"(train {refs['train'].fingerprint}).", "", "| rule | setting | " + " | ".join(cols) + " |",
             "|---" * (2 + len(cols)) + "|"]
    lines += [f"| {r['rule']} | {r['setting']} | " + " | ".join(f"{r.get(c, float('nan')):.3f}" for c in cols) + " |"
              for r in rows]
    lines += ["", f"Paired bootstrap ({DRAWS} draws) of hint F1, joint - head: {paired['joint - head']['mean']:+.4f} "
                  f"[{lo:+.4f}, {hi:+.4f}]"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
