"""Train-step time of the TOMCap adaptor: demo-config throughput vs the earlier loop, fp32 vs bf16, trainable share.

``--demo``: examples/s of the demo config (shipped world GPT-2, k=1, batch 64, the world corpus of
configs/demo.yaml) for the earlier loop (tokeniser call per example and step, whole-batch padding,
GPT-2's Python ``gelu_new``, a KV cache filled in every training forward) and the current one
(captions tokenised once, retrieved captions cached, length-sorted sub-batches, fused GELU, no cache),
interleaved step by step in one process from the same initial weights on the same batches, so machine
load hits both alike; their loss curves are compared step by step.

    .venv/bin/python benchmarks/train_step.py --demo --steps 40 --threads 1

``--demo --processes 2``: the demo's throughput as ``tomcap demo`` trains its variants (``demo.workers``
processes side by side, one thread each) against the earlier loop in one process, in alternating
rounds of the same run: examples/s summed over the processes, from the first process start to the
last one's end of its timed steps.

    .venv/bin/python benchmarks/train_step.py --demo --processes 2 --steps 40 --rounds 3

Random-init decoders only (nothing is downloaded): ``world`` is the shipped tiny GPT-2's shape,
``gpt2`` the default ``GPT2Config()`` (124M, the paper's base size). One step = forward + backward
+ AdamW on a batch of prompts with K retrieved captions.

    .venv/bin/python benchmarks/train_step.py --sizes world gpt2 --batch 16 --steps 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tomcap.model import AdaptorConfig, TomcapAdaptor
from tomcap.model.tiny import make_random_gpt2
from tomcap.train.config import TrainConfig
from tomcap.train.data import ArrayRetrieval, BatchBuilder, TrainData
from tomcap.train.loop import autocast, batch_loss, make_optimizer

SIZES = {
    "world": {"n_embd": 96, "n_layer": 3, "n_head": 4, "n_positions": 64},
    "gpt2": {},  # GPT2Config() defaults: 768 wide, 12 layers, 12 heads, 1024 positions, vocab 50257
}
CLIP_DIM = {"world": 128, "gpt2": 512}
CAPTIONS = [f"a {c} {s} {r} a {c2} {s2}" for c in ("red", "blue", "green", "small", "large")
            for s in ("cube", "sphere", "cone", "cylinder") for r in ("left of", "behind", "on top of")
            for c2 in ("grey", "brown") for s2 in ("cube", "torus")]


def build(size: str, tok_dir: Path, k: int, reduce: int = 1) -> TomcapAdaptor:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tok_dir)
    shape = SIZES[size]
    cfg = GPT2Config(add_cross_attention=True, **shape, **({"vocab_size": len(tok)} if shape else {}),
                     eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return TomcapAdaptor(AdaptorConfig(gpt2_dir=tok_dir, clip_dim=CLIP_DIM[size], k=k,
                                                     cross_attention_reduce=reduce), decoder=GPT2LMHeadModel(cfg),
                         tokenizer=tok)


def time_steps(model: TomcapAdaptor, precision: str, batch: int, steps: int, k: int) -> list[float]:
    cfg = TrainConfig(model=model.config, precision=precision, batch_size=batch, warmup_steps=0, steps=steps,
                      gap_correction=False)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(CAPTIONS), model.config.clip_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    data = TrainData(CAPTIONS, emb, [np.array([i]) for i in range(len(CAPTIONS))])
    builder = BatchBuilder(model, cfg, data, ArrayRetrieval(emb, CAPTIONS))
    opt = make_optimizer(model, cfg)
    device = torch.device("cpu")
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and is not counted
        b = builder.micro_batch(step)
        t0 = time.perf_counter()
        with autocast(cfg, device):
            loss = batch_loss(model, b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t0)
    return times


def demo_setup(config: Path, max_scenes: int | None) -> tuple[TomcapAdaptor, TrainConfig, "TrainData", Any]:
    """The demo config's adaptor, training config and world corpus; embeddings are seeded random unit
    vectors (retrieval costs the same as with CLIP embeddings; neither loop's cost depends on them)."""
    from tomcap.model.adaptor import build_adaptor
    from tomcap.settings import load_pipeline_config
    from tomcap.train.data import exclusion_rows, group_codes
    from tomcap.world.captions import scene_captions
    from tomcap.world.splits import train_scenes

    cfg = load_pipeline_config(config)
    world = cfg.world if max_scenes is None else cfg.world.model_copy(update={"n_train_scenes": max_scenes})
    texts, owners = [], []
    for s in train_scenes(world):
        for c in scene_captions(s, world.captions_per_image, world.seed, world.relation_share):
            texts.append(c)
            owners.append(s.scene_id)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(texts), CLIP_DIM["world"])).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    groups = group_codes(owners)
    data = TrainData(texts, emb, exclusion_rows(groups, groups, np.arange(len(texts))))
    # Without entity hints: the earlier loop had none, and the comparison is of the decoder loop (its head
    # would need the world's vocabulary, which the train stage fills in).
    model_cfg = cfg.train.model.model_copy(update={"clip_dim": CLIP_DIM["world"], "entities": None})
    train_cfg = cfg.train.model_copy(update={"model": model_cfg, "gap_correction": False})
    return build_adaptor(model_cfg, seed=train_cfg.seed), train_cfg, data, ArrayRetrieval(emb, texts)


def make_arm(arm: str, model: TomcapAdaptor, cfg: TrainConfig, data: TrainData, retrieval: Any) -> dict[str, Any]:
    """Model, batch builder and optimizer of one loop: ``earlier`` (the tokenizer path: one call per caption
    and prompt, every step; GPT-2's Python GELU) or ``current``."""
    from tomcap.train.loop import fuse_activations

    builder = BatchBuilder(model, cfg, data, retrieval)
    if arm == "earlier":
        builder.tokens = None
    else:
        fuse_activations(model)
    return {"arm": arm, "model": model, "builder": builder, "opt": make_optimizer(model, cfg),
            "params": list(model.trainable_named_parameters().values())}


def earlier_loss(model: TomcapAdaptor, batch: Any) -> torch.Tensor:
    """``batch_loss`` as the earlier loop computed it: GPT-2's default forward, which also fills a KV cache
    that training never reads (the current ``caption_loss`` passes ``use_cache=False``)."""
    from tomcap.model.adaptor import IGNORE_INDEX

    states, enc_mask = model.condition_states(batch.condition, batch.keep)
    hidden = model.decoder.transformer(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                       encoder_hidden_states=states, encoder_attention_mask=enc_mask).last_hidden_state
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE_INDEX
    return torch.nn.functional.cross_entropy(model.decoder.lm_head(hidden[:, :-1][keep]).float(), targets[keep])


def arm_step(a: dict[str, Any], cfg: TrainConfig, step: int) -> float:
    """One optimizer step of arm ``a`` as its loop takes it (seeded and scheduled by ``step``); its loss."""
    from tomcap.train.loop import backward_in_chunks, get_lr

    torch.manual_seed(step)
    for g in a["opt"].param_groups:
        g["lr"] = get_lr(step, cfg)
    batch = a["builder"].micro_batch(step)
    if a["arm"] == "earlier":
        loss = earlier_loss(a["model"], batch)
        loss.backward()
        value = float(loss.detach())
    else:
        value = backward_in_chunks(a["model"], batch, cfg, torch.device("cpu"))
    torch.nn.utils.clip_grad_norm_(a["params"], cfg.grad_clip)
    a["opt"].step()
    a["opt"].zero_grad(set_to_none=True)
    return value


def demo_throughput(args: argparse.Namespace) -> dict:
    import copy

    model, cfg, data, retrieval = demo_setup(args.config, args.max_scenes)
    arms = {arm: {**make_arm(arm, copy.deepcopy(model), cfg, data, retrieval), "wall": [], "cpu": [], "loss": []}
            for arm in ("earlier", "current")}
    for step in range(args.steps + 1):  # step 0 warms allocators up and is not timed
        for a in arms.values():
            t0, c0 = time.perf_counter(), time.process_time()
            value = arm_step(a, cfg, step)
            if step:
                a["wall"].append(time.perf_counter() - t0)
                a["cpu"].append(time.process_time() - c0)
            a["loss"].append(value)
    out: dict[str, Any] = {"rows": len(data), "batch": cfg.batch_size, "k": cfg.model.k, "steps": args.steps,
                           "threads": args.threads}
    for arm, a in arms.items():
        out[arm] = {"examples_per_s_wall": round(cfg.batch_size / statistics.median(a["wall"]), 1),
                    "examples_per_cpu_s": round(cfg.batch_size / statistics.median(a["cpu"]), 1)}
    out["ratio_wall"] = round(out["current"]["examples_per_s_wall"] / out["earlier"]["examples_per_s_wall"], 2)
    out["ratio_cpu"] = round(out["current"]["examples_per_cpu_s"] / out["earlier"]["examples_per_cpu_s"], 2)
    diffs = [abs(x - y) for x, y in zip(arms["earlier"]["loss"], arms["current"]["loss"])]
    out["loss_first_last"] = [round(arms["current"]["loss"][0], 4), round(arms["current"]["loss"][-1], 4)]
    out["loss_max_abs_diff"] = float(f"{max(diffs):.2e}")
    return out


def _arm_worker(arm: str, args: argparse.Namespace, barrier: Any, out: Any) -> None:
    """One process of a round: build the demo setup, warm up one step, wait for the others, time the steps.
    Its math libraries get ``--threads`` each, as the demo's pool workers do (``tomcap.threads``)."""
    from tomcap.threads import limit_threads

    limit_threads(args.threads)
    model, cfg, data, retrieval = demo_setup(args.config, args.max_scenes)
    a = make_arm(arm, model, cfg, data, retrieval)
    arm_step(a, cfg, 0)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
        arm_step(a, cfg, i)
    out.put((t0, time.perf_counter(), args.steps * cfg.batch_size))


def _round(arm: str, n: int, args: argparse.Namespace) -> float:
    """Examples/s of ``n`` processes of ``arm`` started together (summed over them)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_arm_worker, args=(arm, args, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    res = [out.get() for _ in procs]
    for p in procs:
        p.join()
    start, end = min(r[0] for r in res), max(r[1] for r in res)
    return sum(r[2] for r in res) / (end - start)


def demo_processes(args: argparse.Namespace) -> dict:
    rounds = []
    for r in range(args.rounds):
        earlier = _round("earlier", 1, args)
        current = _round("current", args.processes, args)
        rounds.append({"earlier_examples_per_s": round(earlier, 1), "current_examples_per_s": round(current, 1),
                       "ratio": round(current / earlier, 2)})
        print(f"round {r}: {rounds[-1]}", flush=True)
    ratios = [x["ratio"] for x in rounds]
    return {"processes": args.processes, "threads": args.threads, "steps": args.steps, "rounds": rounds,
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", action="store_true", help="demo-config throughput, earlier vs current loop")
    ap.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    ap.add_argument("--max-scenes", type=int, default=None,
                    help="demo: fewer world train scenes (default: the config's)")
    ap.add_argument("--sizes", nargs="+", default=["world", "gpt2"], choices=sorted(SIZES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per precision; 0: parameter counts only")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--processes", type=int, default=0,
                    help="demo: current loop in this many processes at once vs the earlier loop in one")
    ap.add_argument("--rounds", type=int, default=3, help="demo --processes: alternating rounds")
    ap.add_argument("--cross-reduce", type=int, default=1, help="model.cross_attention_reduce (SmallCap: 4)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.demo and args.processes:
        res = demo_processes(args)
        print(f"demo config, {args.processes} processes vs the earlier loop in one: ratio {res['ratio_median']}x "
              f"(rounds {res['ratio_min']}-{res['ratio_max']})")
        print(json.dumps(res))
        return
    if args.demo:
        res = demo_throughput(args)
        print(f"demo config: earlier {res['earlier']} current {res['current']} -> ratio wall {res['ratio_wall']}x, "
              f"cpu {res['ratio_cpu']}x; loss {res['loss_first_last']}, max |diff| {res['loss_max_abs_diff']}")
        print(json.dumps(res))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = make_random_gpt2(Path(tmp), CAPTIONS * 3, vocab_size=400)
        for size in args.sizes:
            model = build(size, tok_dir, args.k, args.cross_reduce)
            counts = model.param_counts()
            row = {"trainable": counts.trainable, "total": counts.total, "share": round(counts.share, 4)}
            print(f"{size:6s} trainable {counts.trainable:>10,d} / {counts.total:>11,d} ({100 * counts.share:5.2f}%)",
                  flush=True)
            if args.steps == 0:
                results[size] = row
                continue
            for precision in ("fp32", "bf16"):
                ts = time_steps(model, precision, args.batch, args.steps, args.k)
                row[f"{precision}_step_s"] = round(statistics.median(ts), 4)
            row["bf16_over_fp32"] = round(row["bf16_step_s"] / row["fp32_step_s"], 3)
            results[size] = row
            print(f"{size:6s} fp32 {row['fp32_step_s']:.3f}s  bf16 {row['bf16_step_s']:.3f}s  "
                  f"ratio {row['bf16_over_fp32']:.2f} (goal <= 0.60)", flush=True)
    print(json.dumps({"batch": args.batch, "k": args.k, "threads": args.threads, "cross_reduce": args.cross_reduce,
                      "results": results}))


if __name__ == "__main__":
    main()
