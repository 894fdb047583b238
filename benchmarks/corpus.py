"""Corpus stage throughput on a synthetic CC3M-style TSV (caption<TAB>url), and its peak memory.

Usage: python benchmarks/corpus.py [--rows 1000000] [--dup-rate 0.05]
Prints rows/s and the peak resident set size of the process. Not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus

WORDS = ("a man woman dog cat red blue green small large riding sitting standing on in near the with of "
         "street beach table field bike horse car tree building water snow grass white black young old").split()


def write_tsv(path: Path, rows: int, dup_rate: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            if recent and rng.random() < dup_rate:
                cap = rng.choice(recent)
            else:
                cap = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
                recent = (recent + [cap])[-1000:]
            f.write(f"{cap}\thttp://example.invalid/{i}.jpg\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dup-rate", type=float, default=0.05)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "synthetic.tsv"
        t0 = time.perf_counter()
        write_tsv(tsv, args.rows, args.dup_rate)
        print(f"wrote {args.rows} rows ({tsv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        ref = run_corpus(CorpusConfig(sources=[SourceConfig(path=tsv)]), Path(tmp) / "data")
        dt = time.perf_counter() - t0
        rows_out = ref.manifest().rows["rows_out"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"corpus stage: {args.rows} rows in -> {rows_out} out in {dt:.2f}s = {args.rows / dt:,.0f} rows/s; "
          f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
