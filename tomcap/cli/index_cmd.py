"""``tomcap index``: text embedding artifact -> FAISS datastore (auto index choice, measured recall/QPS)."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path

from .common import add_stage_args, corpus_of, load_config, report
from .embed_cmd import with_section


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="FAISS datastore of the text embeddings (with texts, for retrieval)")
    add_stage_args(p)
    p.add_argument("--embed", type=Path, help="text 'embed' artifact folder (default: the config's corpus -> embed)")
    p.add_argument("--corpus", type=Path,
                   help="corpus artifact the embeddings come from (default: the config's, or that of --embed)")
    p.add_argument("--index-key", help="'auto' or a faiss factory string such as 'IVF4096,SQ8'")
    p.add_argument("--nprobe", type=int,
                   help="IVF lists scanned per query (default: derived from N, tuned to target recall)")
    p.add_argument("--memory-budget-gb", type=float, help="memory the index may use")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import load_given, run_until

    cfg, data_dir = load_config(args)
    cfg = with_section(cfg, "index", index_key=args.index_key, nprobe=args.nprobe,
                       memory_budget_gb=args.memory_budget_gb)
    given = {name: load_given(name, folder) for name, folder in (("corpus", args.corpus), ("embed", args.embed))
             if folder is not None}
    if "embed" in given and "corpus" not in given:
        given["corpus"] = corpus_of(given["embed"], data_dir)
    ref = run_until(cfg, data_dir, "index", given, force={"index"} if args.force else set())["index"]
    info = ref.manifest().info
    k = info["k"]
    report(ref, args, [f"index {info['index_key']} (nprobe {info['nprobe']}), N={info['n']} dim={info['dim']}",
                       f"recall@{k} {info[f'recall@{k}']:.4f}, {info['qps']:.0f} QPS (exact {info['exact_qps']:.0f})"])
    return 0
