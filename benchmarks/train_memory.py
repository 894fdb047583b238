"""Resident memory of the train stage's inputs at corpus scale: the earlier representation vs the current one.

Usage: nice -n 5 .venv/bin/python benchmarks/train_memory.py OUT.json [--n 1000000] [--root DIR]

A synthetic corpus of N captions (5 per image, words from the world vocabulary) with float16 embedding
shards (dim 512) on disk; the datastore is the corpus itself (the pipeline's default). Each arm runs in a
fresh process and reports the RSS it added building what training holds for the whole run:

- earlier: texts as a Python list, embeddings as one float32 matrix (``EmbeddingSet.array``), one
  exclusion array per caption (the datastore's per-image-id dict + ``np.union1d``), the tokenised corpus
  as one Python list per caption, the datastore's text column converted to Python objects;
- current: the corpus column (Arrow), a :class:`ShardRows` view of the memory-mapped shards, the group codes of
  :func:`tomcap.train.index_glue.exclusions`, :class:`PromptTokens`' flat int32 arrays, texts gathered per batch.

Mapped shard pages are file-backed (reclaimable) and not touched by either arm until batches are read, so
RSS here is what each representation allocates. Bytes per caption scale to any N.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM = 512
PER_IMAGE = 5
WORDS = ("a", "the", "small", "large", "red", "blue", "green", "yellow", "purple", "orange", "brown", "grey",
         "square", "circle", "triangle", "star", "diamond", "cross", "left", "right", "of", "above", "below",
         "on", "black", "background", "two", "three", "shapes", "next", "to", "in", "corner", "middle")
SHARD_ROWS = 1_000_000


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def make_inputs(root: Path, n: int, seed: int = 0) -> None:
    import polars as pl

    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    lengths = rng.integers(6, 16, n)
    texts = [" ".join(words[rng.integers(0, len(words), k)]) for k in lengths]
    pl.DataFrame({"caption_id": [f"c{i}" for i in range(n)], "image_id": [f"img{i // PER_IMAGE}" for i in range(n)],
                  "text": texts}).write_parquet(root / "corpus.parquet")
    for i, a in enumerate(range(0, n, SHARD_ROWS)):
        m = min(SHARD_ROWS, n - a)
        x = rng.standard_normal((m, DIM), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.save(root / f"emb-{i:05d}.npy", x.astype(np.float16))


def arm(root: Path, which: str) -> dict:
    import polars as pl

    sys.path.insert(0, str(REPO))
    from tomcap.embed.store import EmbeddingSet
    from tomcap.model.adaptor import build_adaptor
    from tomcap.model.config import AdaptorConfig

    model = build_adaptor(AdaptorConfig(gpt2_dir=REPO / "data" / "models" / "tomcap-world-gpt2", clip_dim=DIM, k=1))
    df = pl.read_parquet(root / "corpus.parquet")
    shards = [np.load(f, mmap_mode="r") for f in sorted(root.glob("emb-*.npy"))]
    emb = EmbeddingSet(ref=None, info={"dim": DIM}, ids=df.select("caption_id"), shards=shards)
    base = _rss_mb()
    t0 = time.perf_counter()
    if which == "earlier":
        texts = df["text"].to_list()
        matrix = np.asarray(emb.array(np.float32))
        groups = {i: np.asarray(r, np.int64) for i, r in (df.with_row_index("_row").group_by("image_id")
                                                          .agg(pl.col("_row")).iter_rows())}
        own = {c: i for i, c in enumerate(df["caption_id"].to_list())}
        exclude = [np.union1d(groups[i], [own[c]]).astype(np.int64)
                   for c, i in zip(df["caption_id"].to_list(), df["image_id"].to_list())]
        tokens = [t + [model.eos_id] for t in model.tokenizer([" " + t for t in texts],
                                                              add_special_tokens=False)["input_ids"]]
        store_texts = df["text"].to_numpy()  # the datastore's column as Python objects, once
        held = (texts, matrix, exclude, tokens, store_texts)
    else:
        from tomcap.train.data import PromptTokens, ShardRows
        from tomcap.train.index_glue import exclusions

        texts = df["text"]
        view = ShardRows(emb, np.arange(df.height))
        exclude = exclusions(df, df)
        tokens = PromptTokens(model, texts)
        held = (texts, view, exclude, tokens)
    seconds = time.perf_counter() - t0
    added = _rss_mb() - base
    del held
    return {"arm": which, "n": df.height, "rss_added_mb": round(added, 1),
            "bytes_per_caption": round(added * 2**20 / df.height, 1), "build_s": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--arm", choices=("earlier", "current"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.arm:  # child process: one arm, JSON on stdout
        print(json.dumps(arm(args.root, args.arm)))
        return 0
    root = args.root or Path(tempfile.mkdtemp(prefix="tomcap-train-memory-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "corpus.parquet").exists():
        make_inputs(root, args.n)
    res = {"n": args.n, "dim": DIM, "captions_per_image": PER_IMAGE, "arms": {}}
    for which in ("earlier", "current"):
        out = subprocess.run([sys.executable, __file__, str(args.out), "--root", str(root), "--arm", which],
                             capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        res["arms"][which] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(res["arms"][which]), flush=True)
    e, c = res["arms"]["earlier"], res["arms"]["current"]
    res["ratio"] = round(e["rss_added_mb"] / max(c["rss_added_mb"], 1e-9), 1)
    res["cc3m_3_3m_gb"] = {k: round(v["bytes_per_caption"] * 3.3e6 / 2**30, 2) for k, v in res["arms"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
