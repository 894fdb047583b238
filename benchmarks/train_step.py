"""Train-step time of the TOMCap adaptor, fp32 vs bf16 autocast, and the trainable share per size.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["world", "gpt2"], choices=sorted(SIZES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per precision; 0: parameter counts only")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cross-reduce", type=int, default=1, help="model.cross_attention_reduce (SmallCap: 4)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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
