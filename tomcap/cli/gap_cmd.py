"""``tomcap gap``: text + image embedding artifacts -> Gaussian modality-gap statistics and report."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path

from .common import add_stage_args, load_config, report
from .embed_cmd import with_section


ARTIFACT_OPTIONS = (
    ("--text", "text 'embed' artifact folder (default: the config's corpus -> embed)"),
    ("--images", "'embed_images' artifact folder (default: embed the config's embed_images.images)"),
    ("--paired", "optional paired 'embed_images' artifact (image ids = corpus image_id)"),
)
"""The artifact folders the command takes instead of building them."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gap", help="Gaussian modality-gap statistics (mu/sigma per modality, noise std, report)")
    add_stage_args(p)
    for flag, what in ARTIFACT_OPTIONS:
        p.add_argument(flag, type=Path, help=what)
    p.add_argument("--noise-std", type=float, help="noise std when no paired set is given")
    p.add_argument("--no-renormalize", action="store_true", help="do not L2-normalise corrected text embeddings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import load_given, run_until

    cfg, data_dir = load_config(args)
    cfg = with_section(cfg, "gap", noise_std=args.noise_std, renormalize=False if args.no_renormalize else None)
    given = {name: load_given(name, folder) for name, folder in (("embed", args.text), ("embed_images", args.images))
             if folder is not None}
    extra = {"gap": {"paired": load_given("paired_images", args.paired)}} if args.paired else None
    ref = run_until(cfg, data_dir, "gap", given, force={"gap"} if args.force else set(), extra=extra)["gap"]
    info = ref.manifest().info
    b, a = info["before"], info["after"]
    report(ref, args, [f"centroid gap {b['centroid_gap']:.4f} -> {a['centroid_gap']:.4f}",
                       f"distribution gap {b['distribution_gap']:.4f} -> {a['distribution_gap']:.4f}",
                       f"report: {ref.dir / 'report.md'}"])
    return 0
