"""``tomcap train``: corpus + embeddings (+ gap stats, datastore) -> trained adaptor artifact."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path

from .common import add_stage_args, corpus_of, load_config, report

INPUTS = (("corpus", "corpus"), ("embed", "embed"), ("gap", "gap"), ("index", "index"),
          ("image_embed", "paired_images"))
"""(option, pipeline stage) of every input the command takes as an artifact folder."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the TOMCap adaptor (frozen GPT-2 + cross-attention + rsLoRA) on text only")
    add_stage_args(p)
    for opt, stage in INPUTS:
        p.add_argument(f"--{opt.replace('_', '-')}", type=Path, default=None, metavar="DIR",
                       help=f"'{stage}' artifact folder (default: built or reused from the config)")
    p.set_defaults(func=run)


def given_refs(args: argparse.Namespace, data_dir: Path) -> dict:
    """The artifact folders given on the command line, by pipeline stage; embeddings imply their corpus."""
    from ..pipeline import load_given

    refs = {stage: load_given(stage, getattr(args, opt)) for opt, stage in INPUTS if getattr(args, opt) is not None}
    if "embed" in refs and "corpus" not in refs:
        refs["corpus"] = corpus_of(refs["embed"], data_dir)
    return refs


def run(args: argparse.Namespace) -> int:
    from ..pipeline import run_until

    cfg, data_dir = load_config(args)
    ref = run_until(cfg, data_dir, "train", given_refs(args, data_dir),
                    force={"train"} if args.force else set())["train"]
    info = ref.manifest().info
    p = info.get("params", {})
    lines = [f"trainable parameters: {p.get('trainable')} / {p.get('total')} ({100 * p.get('share', 0):.2f}%)",
             f"val loss: {info.get('val_loss_first')} -> {info.get('val_loss_last')} in {info.get('seconds')} s"]
    report(ref, args, lines)
    return 0
