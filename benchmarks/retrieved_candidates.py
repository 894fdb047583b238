"""Retrieved captions as rerank candidates (issue 20), on the world's VALIDATION split: another way for retrieval to
add to the entity hints, measured and not taken.

Trains (or reuses) the demo's ``full`` variant, captions validation with the committed decoding, then reranks a
pool of the image's finished beams + its ``n`` nearest datastore captions. Every pool member is scored alike: CLIP
similarity to the image + ``weight`` x the adaptor's mean teacher-forced log-probability of it (the prompt and
cross-attention states the beams were decoded with). CIDEr against the validation references for each (weight, n);
``n = 0`` is the beams alone. Nothing here reads the test or novel splits.

    nice -n 5 .venv/bin/python benchmarks/retrieved_candidates.py --root /tmp/tune \
        --out benchmarks/results/retrieved_candidates_val.json
"""
from __future__ import annotations

import json

import numpy as np
from _demo_world import demo_arguments

SPLIT = "val"
WEIGHTS = (0.1, 0.3, 1.0, 3.0)
RETRIEVED = (0, 1, 4, 8)
BATCH = 50


def mean_logprob(model, stream, text: str) -> float:
    """Mean log-probability per token of ``text`` (eos included) after ``stream``'s prompt, teacher-forced."""
    import torch

    target = model.target_ids(text)
    ids = torch.tensor([stream.prompt_ids + target])
    logits = model(input_ids=ids, encoder_hidden_states=stream.encoder_states[None]).logits[0].float()
    logp = logits.log_softmax(-1)[len(stream.prompt_ids) - 1:-1]
    return float(logp.gather(1, torch.tensor(target)[:, None]).sum()) / len(target)


def main(argv: list[str] | None = None) -> int:
    args = demo_arguments(__doc__.splitlines()[0]).parse_args(argv)

    import torch
    from _demo_world import full_variant, train_and_score

    from tomcap.embed.config import ImageEmbedConfig
    from tomcap.embed.store import EmbeddingSet
    from tomcap.evaluate import EvalItem, score_items
    from tomcap.generate.captioner import build_streams
    from tomcap.generate.guidance import COND
    from tomcap.generate.session import CaptionSession
    from tomcap.pipeline import reusable, run_until
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.world.stage import world_artifact_paths

    dd = str(args.root)
    world, cfg = full_variant(args.config, dd)
    refs, metrics, results, retrieved = train_and_score(cfg, dd, world, SPLIT)
    scfg = split_pipeline_config(cfg, world, SPLIT)
    done = run_until(scfg, dd, "generate", reusable(cfg, refs, scfg))
    images = EmbeddingSet.open(done["test_images"])
    session = CaptionSession.open(scfg.generate, done["train"], done["index"],
                                  ImageEmbedConfig.model_validate(images.ref.manifest().config),
                                  images.model_fingerprint)
    model, store = session.model, session.store
    emb = np.asarray(images.array(), np.float32)
    ann = json.loads(world_artifact_paths(world).split(SPLIT).annotations.read_text(encoding="utf-8"))
    references: dict[int, list[str]] = {}
    for a in ann["annotations"]:
        references.setdefault(a["image_id"], []).append(a["caption"])
    pools = []
    decode = scfg.generate.decode
    with torch.inference_mode():
        for start in range(0, len(emb), BATCH):
            q = emb[start:start + BATCH]
            rows = store.search(q, max(RETRIEVED)).rows
            near = [store.texts(r) for r in rows]
            img = torch.tensor(q)
            entities = model.entity_hints(img, model.choose_entities(img))
            # the prompt and states the beams were decoded with: the checkpoint's k nearest captions
            streams = build_streams(model, img, [n[:session.k] for n in near],
                                    torch.tensor(store.embeddings(rows[:, :session.k])), decode.guidance(),
                                    model.max_length - decode.max_new_tokens, entities)[COND]
            for i, stream in enumerate(streams):
                beams = retrieved[start + i]["candidates"]
                pool = beams + [t for t in near[i] if t]
                clip = session.text_encoder(pool) @ q[i]
                pools.append({"image_id": retrieved[start + i]["image_id"], "pool": pool, "beams": len(beams),
                              "clip": clip.tolist(), "logp": [mean_logprob(model, stream, t) for t in pool]})
    keys = [str(p["image_id"]) for p in pools]
    refs_of = [references[p["image_id"]] for p in pools]
    settings, items = [], []
    for n in RETRIEVED:
        for w in WEIGHTS:
            chosen, from_retrieval = [], 0
            for p in pools:
                m = p["beams"] + n
                best = int(np.argmax([p["clip"][j] + w * p["logp"][j] for j in range(m)]))
                chosen.append(p["pool"][best])
                from_retrieval += best >= p["beams"]
            items.append(EvalItem(name=f"n{n}_w{w}", keys=keys, ref_keys=keys, refs=refs_of, hyps=chosen))
            settings.append({"retrieved": n, "weight": w, "retrieved_chosen": round(from_retrieval / len(pools), 3)})
    # one scoring run for every setting: the references are tokenised once
    scored = score_items(items, meteor=False, spice=False)
    rows_out = [{**row, "CIDEr": round(sc.metrics["CIDEr"], 4)} for row, sc in zip(settings, scored)]
    for row in rows_out:
        print(json.dumps(row), flush=True)
    lines = [f"Committed decoding's validation CIDEr: {metrics['CIDEr']:.4f} (the beams reranked as decoded).", "",
             "| retrieved captions in the pool | log-prob weight | CIDEr | pool's pick is a retrieved caption |",
             "|---|---|---|---|"]
    lines += [f"| {r['retrieved']} | {r['weight']} | {r['CIDEr']:.3f} | {r['retrieved_chosen']:.3f} |"
              for r in rows_out]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"split": SPLIT, "committed_CIDEr": metrics["CIDEr"], "rows": rows_out}, indent=2))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
