"""Cost of artifact integrity checks at 1M rows, and what the per-key lock saves a second identical run.

Usage: nice python benchmarks/integrity.py [--rows 1000000] [--dim 512] [--out DIR]
Not a test: run it by hand. Everything is measured in this run against a baseline of the same run:

- corpus: the corpus stage on a 1M-row CC3M-style TSV (benchmarks/corpus.py's generator), then the first use of
  the artifact in a fresh process (sizes + sha256 of every file) against the build time and against reading it.
- embeddings: a 1M x dim float16 embedding artifact (the text-embedding layout, synthetic values: CLIP on 1M
  captions is not the point here) written through the store; first use in a fresh process (hashes), a later use
  in the same process (stat only), against one full read of the shards (what a downstream stage pays anyway).
- lock: two identical corpus runs started together on an empty data dir; the second's wall and CPU time against
  the first's (without the lock both did the whole work).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import write_tsv  # noqa: E402  (benchmarks/corpus.py)

REPO = Path(__file__).resolve().parents[1]

FIRST_USE = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from tomcap.artifacts import load_ref
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = load_ref(sys.argv[1])          # sizes + sha256 of every file (first use in this process)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(100):
        ref.dir                          # later uses: one stat per file
    later = (time.perf_counter() - t0) / 100
    t0 = time.perf_counter()
    if sys.argv[2] == "embed":
        import numpy as np
        total = sum(float(np.load(ref.file(s), mmap_mode="r").astype(np.float32).sum())
                    for s in ref.manifest().info["shards"])
    else:
        import polars as pl
        total = pl.read_parquet([ref.file(s) for s in ref.manifest().info["shards"]]).height
    read = time.perf_counter() - t0
    print(json.dumps({"first_use_s": first, "later_use_s": later, "read_s": read}))
""")

CORPUS_RUN = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
    ref = run_corpus(CorpusConfig(sources=[SourceConfig(path=sys.argv[1])]), sys.argv[2])
    print(json.dumps({"cached": ref.cached, "wall_s": time.perf_counter() - t0}))
""")


def _python(script: str, *args: str) -> dict:
    """Run a script in a fresh process; its last line parsed as JSON."""
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def bench_corpus(root: Path, rows: int) -> tuple[Path, dict]:
    from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus

    tsv = root / "caps.tsv"
    write_tsv(tsv, rows, dup_rate=0.05)
    t0 = time.perf_counter()
    ref = run_corpus(CorpusConfig(sources=[SourceConfig(path=tsv)]), root / "data")
    build = time.perf_counter() - t0
    use = _python(FIRST_USE, ref.path, "corpus")
    return tsv, {"rows": rows, "bytes": _size(ref.dir), "build_s": build, **use}


def bench_embed(root: Path, rows: int, dim: int) -> dict:
    from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec
    from tomcap.embed.config import EmbedConfig
    from tomcap.embed.store import write_shards

    emb = np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32).astype(np.float16)

    def build(tmp: Path) -> BuildOutput:
        import polars as pl

        shards = write_shards(emb, tmp, "float16", 1_000_000)
        pl.DataFrame({"caption_id": [f"{i:016x}" for i in range(rows)]}).write_parquet(tmp / "caption_ids.parquet")
        return BuildOutput(rows={"rows": rows}, info={"shards": shards, "dim": dim})

    t0 = time.perf_counter()
    ref = ArtifactStore(root / "data").build(StageSpec("embed", "bench"), EmbedConfig(), {"bench": "1"}, build)
    build_s = time.perf_counter() - t0
    use = _python(FIRST_USE, ref.path, "embed")
    return {"rows": rows, "dim": dim, "bytes": _size(ref.dir), "build_incl_hash_s": build_s, **use}


def bench_lock(root: Path, tsv: Path) -> dict:
    data = root / "lock-data"
    a = subprocess.Popen([sys.executable, "-c", CORPUS_RUN, str(tsv), str(data)], cwd=REPO, stdout=subprocess.PIPE,
                         text=True)
    time.sleep(0.5)  # both start at once in practice; a head start only makes the first the builder
    b = subprocess.Popen([sys.executable, "-c", CORPUS_RUN, str(tsv), str(data)], cwd=REPO, stdout=subprocess.PIPE,
                         text=True)
    res = {}
    for name, p in (("first", a), ("second", b)):
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        res[name] = {**json.loads(p.stdout.read().strip().splitlines()[-1]), "cpu_s": ru.ru_utime + ru.ru_stime}
    rerun = _python(CORPUS_RUN, str(tsv), str(data))
    res["sequential_rerun"] = rerun
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir, removed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        root = Path(tmp)
        tsv, corpus = bench_corpus(root, args.rows)
        print("corpus", json.dumps(corpus), flush=True)
        embed = bench_embed(root, args.rows, args.dim)
        print("embed", json.dumps(embed), flush=True)
        lock = bench_lock(root, tsv)
        print("lock", json.dumps(lock), flush=True)
    mb = embed["bytes"] / 2**20
    print(f"embeddings {mb:.0f} MiB: first use {embed['first_use_s']:.2f} s ({mb / embed['first_use_s']:.0f} MiB/s), "
          f"later use {1e6 * embed['later_use_s']:.0f} us, one full read {embed['read_s']:.2f} s "
          f"(first use = {embed['first_use_s'] / embed['read_s']:.2f}x a read)")
    print(f"corpus {corpus['bytes'] / 2**20:.0f} MiB: first use {corpus['first_use_s']:.2f} s, build "
          f"{corpus['build_s']:.1f} s ({corpus['first_use_s'] / corpus['build_s']:.3f}x), "
          f"read {corpus['read_s']:.2f} s")
    f, s = lock["first"], lock["second"]
    print(f"lock: first {f['wall_s']:.1f} s wall / {f['cpu_s']:.1f} s CPU (built), second {s['wall_s']:.1f} s wall / "
          f"{s['cpu_s']:.1f} s CPU (cached={s['cached']}), sequential rerun {lock['sequential_rerun']['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
