"""Decoding speed: images/s for greedy, beam 3, and CFG (batched streams vs two passes).

Uses the shipped world GPT-2 inside a freshly initialised adaptor (speed does not depend on the
adaptor's training; an untrained one rarely stops early, so this is close to the worst case) and
random CLIP-sized conditions with real world captions as the retrieved prompt.

Usage: python benchmarks/generate.py [--images 64] [--batch 32] [--k 2] [--max-new 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tomcap.generate.captioner import caption_batch
from tomcap.generate.decoding import DecodeConfig
from tomcap.model import AdaptorConfig, build_adaptor
from tomcap.world import WORLD_GPT2_DIR, WorldConfig
from tomcap.world.captions import scene_captions
from tomcap.world.scenes import scene_stream

CLIP_DIM = 128


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--max-new", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_adaptor(AdaptorConfig(gpt2_dir=WORLD_GPT2_DIR, clip_dim=CLIP_DIM, k=args.k)).eval()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(args.images, CLIP_DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ret = rng.normal(size=(args.images, args.k, CLIP_DIM)).astype(np.float32)
    world = WorldConfig()
    caps = [c for s in scene_stream(world.seed, "bench", args.images * args.k) for c in scene_captions(s, 1)]
    texts = [caps[i * args.k:(i + 1) * args.k] for i in range(args.images)]
    cases = {
        "greedy": DecodeConfig(strategy="greedy", max_new_tokens=args.max_new, no_repeat_ngram_size=0),
        "beam3": DecodeConfig(strategy="beam", beam_size=3, max_new_tokens=args.max_new, no_repeat_ngram_size=0),
        "greedy+CFG batched": DecodeConfig(strategy="greedy", guidance_scale=2.0, max_new_tokens=args.max_new,
                                           no_repeat_ngram_size=0),
        "greedy+CFG two-pass": DecodeConfig(strategy="greedy", guidance_scale=2.0, batched_guidance=False,
                                            max_new_tokens=args.max_new, no_repeat_ngram_size=0),
    }
    rates = {}
    for name, cfg in cases.items():
        t0 = time.perf_counter()
        for s in range(0, args.images, args.batch):
            caption_batch(model, emb[s:s + args.batch], texts[s:s + args.batch], ret[s:s + args.batch], cfg)
        rates[name] = args.images / (time.perf_counter() - t0)
        print(f"{name:22s} {rates[name]:8.1f} images/s")
    print(f"CFG batched cost vs unguided greedy: {rates['greedy'] / rates['greedy+CFG batched']:.2f}x (goal <= 1.3x); "
          f"two-pass: {rates['greedy'] / rates['greedy+CFG two-pass']:.2f}x")


if __name__ == "__main__":
    main()
