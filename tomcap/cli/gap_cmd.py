"""``tomcap gap``: text + image embedding artifacts -> Gaussian modality-gap statistics and report."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..artifacts import load_ref
from .common import add_stage_args, load_config, report
from .embed_cmd import corpus_ref, override, text_embedding_ref


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gap", help="Gaussian modality-gap statistics (mu/sigma per modality, noise std, report)")
    add_stage_args(p)
    p.add_argument("--text", type=Path, help="text 'embed' artifact folder (default: the config's corpus -> embed)")
    p.add_argument("--images", type=Path, help="'embed_images' artifact folder (default: embed the config's embed_images.images)")
    p.add_argument("--paired", type=Path, help="optional paired 'embed_images' artifact (image ids = corpus image_id)")
    p.add_argument("--noise-std", type=float, help="noise std when no paired set is given")
    p.add_argument("--no-renormalize", action="store_true", help="do not L2-normalise corrected text embeddings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..embed import run_embed_images
    from ..gap import run_gap

    cfg, data_dir = load_config(args)
    gap_cfg = override(cfg.gap, noise_std=args.noise_std, renormalize=False if args.no_renormalize else None)
    text = (load_ref(args.text, stage="embed") if args.text
            else text_embedding_ref(cfg, data_dir, corpus_ref(cfg, data_dir, None)))
    images = load_ref(args.images, stage="embed_images") if args.images else run_embed_images(cfg.embed_images, data_dir)
    paired = load_ref(args.paired, stage="embed_images") if args.paired else None
    ref = run_gap(gap_cfg, data_dir, text=text, images=images, paired=paired, force=args.force)
    info = ref.manifest().info
    b, a = info["before"], info["after"]
    report(ref, args, [f"centroid gap {b['centroid_gap']:.4f} -> {a['centroid_gap']:.4f}",
                       f"distribution gap {b['distribution_gap']:.4f} -> {a['distribution_gap']:.4f}",
                       f"report: {ref.dir / 'report.md'}"])
    return 0
