"""``tomcap index``: text embedding artifact -> FAISS datastore (auto index choice, measured recall/QPS)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..artifacts import load_ref
from .common import add_stage_args, load_config, report
from .embed_cmd import corpus_ref, override, text_embedding_ref


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="FAISS datastore of the text embeddings (with texts, for retrieval)")
    add_stage_args(p)
    p.add_argument("--embed", type=Path, help="text 'embed' artifact folder (default: the config's corpus -> embed)")
    p.add_argument("--corpus", type=Path, help="corpus artifact the embeddings come from (default: the config's corpus)")
    p.add_argument("--index-key", help="'auto' or a faiss factory string such as 'IVF4096,SQ8'")
    p.add_argument("--nprobe", type=int, help="IVF lists scanned per query (default: derived from N, tuned to target recall)")
    p.add_argument("--memory-budget-gb", type=float, help="memory the index may use")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..index import run_index

    cfg, data_dir = load_config(args)
    idx_cfg = override(cfg.index, index_key=args.index_key, nprobe=args.nprobe, memory_budget_gb=args.memory_budget_gb)
    corpus = corpus_ref(cfg, data_dir, args.corpus)
    embed = load_ref(args.embed, stage="embed") if args.embed else text_embedding_ref(cfg, data_dir, corpus)
    ref = run_index(idx_cfg, data_dir, embed=embed, corpus=corpus, force=args.force)
    info = ref.manifest().info
    k = info["k"]
    report(ref, args, [f"index {info['index_key']} (nprobe {info['nprobe']}), N={info['n']} dim={info['dim']}",
                       f"recall@{k} {info[f'recall@{k}']:.4f}, {info['qps']:.0f} QPS (exact {info['exact_qps']:.0f})"])
    return 0
