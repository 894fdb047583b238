"""Text-embedding speed: naive full-context fp32 ``encode_text`` vs ours (sorted + truncated) exact vs ours bf16.

Usage: python benchmarks/embed_text.py [--n 2000] [--model ViT-B-32] [--batch-size 256] [--threads N]
Captions: a seeded random subset of COCO Karpathy val (../shared/data/captions/karpathy/coco_karpathy_val.json).
Model: random init (seeded), as no weights may be downloaded. Goals: >= 4.5x (exact), >= 13x (bf16, cosine to fp32
>= 0.9999). Prints times, ratios and agreement; not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch

from tomcap.clip import load_clip
from tomcap.constants import SHARED_CAPTIONS_DIR
from tomcap.embed.text import TextEncodeStats, encode_texts

VAL_FILE = SHARED_CAPTIONS_DIR / "karpathy" / "coco_karpathy_val.json"


@torch.inference_mode()
def naive(clip, texts: list[str], batch_size: int) -> np.ndarray:
    """What a plain loop does: tokenise to the full context, ``encode_text`` in fp32, normalise."""
    out = []
    for a in range(0, len(texts), batch_size):
        feats = clip.model.encode_text(clip.tokenizer(texts[a:a + batch_size]).to(clip.device))
        out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
    return np.concatenate(out)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="captions (random subset of the 25k val captions)")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bf16", action="store_true",
                    help="skip the bf16 run (slower than fp32 on CPUs without native bf16)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    caps = [c for r in json.loads(VAL_FILE.read_text()) for c in r["captions"]]
    texts = random.Random(args.seed).sample(caps, min(args.n, len(caps)))
    torch.manual_seed(args.seed)
    clip = load_clip(args.model, device="cpu")
    encode_texts(clip, texts[:64], batch_size=64, progress=False)  # warm-up (allocator, kernels)
    ref, t_naive = timed(lambda: naive(clip, texts, args.batch_size))
    st = TextEncodeStats()
    exact, t_exact = timed(lambda: encode_texts(clip, texts, batch_size=args.batch_size, progress=False, stats=st))
    if args.no_bf16:
        bf16, t_bf16 = ref, float("nan")
    else:
        bf16, t_bf16 = timed(lambda: encode_texts(clip, texts, batch_size=args.batch_size, precision="bf16",
                                                  progress=False))
    cos = np.sum(bf16 * ref, axis=1)
    ctx = clip.model.positional_embedding.shape[0]
    result = {
        "model": args.model, "captions": len(texts), "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mean_tokens_per_caption": round(st.positions / len(texts), 2), "context": ctx,
        "naive_s": round(t_naive, 2), "exact_s": round(t_exact, 2), "bf16_s": round(t_bf16, 2),
        "naive_caps_per_s": round(len(texts) / t_naive, 1),
        "speedup_exact": round(t_naive / t_exact, 2), "speedup_bf16": round(t_naive / t_bf16, 2),
        "exact_max_abs_diff": float(np.abs(exact - ref).max()),
        "bf16_cosine_min": float(cos.min()), "bf16_cosine_mean": float(cos.mean()),
    }
    result["goals_met"] = {"exact>=4.5x": result["speedup_exact"] >= 4.5, "bf16>=13x": result["speedup_bf16"] >= 13,
                           "bf16_cos>=0.9999": result["bf16_cosine_min"] >= 0.9999,
                           "exact<=1e-5": result["exact_max_abs_diff"] <= 1e-5}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
