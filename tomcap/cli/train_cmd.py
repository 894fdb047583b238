"""``tomcap train``: corpus + embeddings (+ gap stats, datastore) -> trained adaptor artifact."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..artifacts import ArtifactRef, ArtifactStore, load_ref
from ..errors import ConfigError, InputDataError
from .common import add_stage_args, load_config, report

INPUTS = (("corpus", "corpus"), ("embed", "embed"), ("gap", "gap"), ("index", "index"), ("image_embed", "embed_images"))
"""(run_train keyword, artifact stage) of every input the command takes as a folder."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the TOMCap adaptor (frozen GPT-2 + cross-attention + rsLoRA) on text only")
    add_stage_args(p)
    for kw, stage in INPUTS:
        built = kw in ("corpus", "embed")
        p.add_argument(f"--{kw.replace('_', '-')}", type=Path, default=None, metavar="DIR",
                       help=f"'{stage}' artifact folder" + (" (default: built from the config)" if built else " (optional)"))
    p.set_defaults(func=run)


def _corpus_of(embed: ArtifactRef, data_dir: Path) -> ArtifactRef:
    """The corpus artifact an embedding artifact was built from (looked up in the data dir)."""
    corpus_fp = embed.manifest().upstream.get("corpus")
    store = ArtifactStore(data_dir)
    for m in store.list("corpus"):
        if m.fingerprint == corpus_fp:
            return load_ref(store.path_for("corpus", m.key), stage="corpus")
    raise InputDataError("the corpus of these embeddings is not in the data dir", path=embed.dir,
                         fix="pass --corpus DIR (the corpus artifact the embeddings were built from)")


def upstream_refs(args: argparse.Namespace, cfg, data_dir: Path) -> dict[str, ArtifactRef]:
    """Input refs: the folders given, else built (or reused from cache) from the config's sections,
    as the 'prepare' flow does: corpus, embed, gap (when images are configured), index."""
    refs = {kw: load_ref(getattr(args, kw), stage=stage) for kw, stage in INPUTS if getattr(args, kw) is not None}
    if "embed" not in refs:
        from ..corpus import run_corpus
        from ..embed.stage import run_embed

        refs.setdefault("corpus", run_corpus(cfg.corpus, data_dir))
        refs["embed"] = run_embed(cfg.embed, data_dir, refs["corpus"])
    refs.setdefault("corpus", _corpus_of(refs["embed"], data_dir))
    train = cfg.train
    if "gap" not in refs and (train.gap_correction or train.noise) and train.query == "text":
        if cfg.embed_images.images is None:
            if train.gap_correction:
                raise ConfigError("gap correction needs gap statistics, and no images are configured to estimate them",
                                  fix="pass --gap DIR, set embed_images.images to an image folder, "
                                      "or set train.gap_correction: false")
        else:
            from ..embed.image_stage import run_embed_images
            from ..gap import run_gap

            images = run_embed_images(cfg.embed_images, data_dir)
            refs["gap"] = run_gap(cfg.gap, data_dir, text=refs["embed"], images=images)
    if "index" not in refs and train.uses_retrieval:
        from ..index import run_index

        refs["index"] = run_index(cfg.index, data_dir, embed=refs["embed"], corpus=refs["corpus"])
    return refs


def run(args: argparse.Namespace) -> int:
    from ..train.stage import run_train

    cfg, data_dir = load_config(args)
    refs = upstream_refs(args, cfg, data_dir)
    ref = run_train(cfg.train, data_dir, force=args.force, **refs)
    info = ref.manifest().info
    p = info.get("params", {})
    lines = [f"trainable parameters: {p.get('trainable')} / {p.get('total')} ({100 * p.get('share', 0):.2f}%)",
             f"val loss: {info.get('val_loss_first')} -> {info.get('val_loss_last')} in {info.get('seconds')} s"]
    report(ref, args, lines)
    return 0
