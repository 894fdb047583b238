"""``tomcap generate`` (stage 6: an image-embedding artifact -> captions) and ``tomcap caption`` (image
files -> captions). Both go through ``tomcap.generate.session``: the same checkpoint and image give the
same caption."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import DEMO_CONFIG_FILE
from ..errors import ConfigError, InputDataError
from .common import add_stage_args, load_config, report

if TYPE_CHECKING:
    from ..artifacts import ArtifactRef, ArtifactStore
    from ..generate.config import GenerateConfig
    from ..settings import PipelineConfig

FULL_RECIPE = {"query": "text", "gap_correction": True, "noise": True, "retrieval_prompt": True,
               "retrieval_cross": True}
"""Training switches of the full text-only TOMCap model (the default checkpoint of `tomcap caption`)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="caption an image-embedding artifact with a checkpoint and a datastore")
    add_stage_args(p)
    add_artifact_args(p)
    p.add_argument("--images", type=Path, default=None,
                   help="'embed_images' artifact folder of the images to caption (default: embed test_images.images)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (>= 0)")
    p.set_defaults(func=run_generate_cmd)

    c = sub.add_parser("caption", help="print captions for image files")
    c.add_argument("image", type=Path, nargs="+")
    c.add_argument("--config", type=Path, default=DEMO_CONFIG_FILE, help="pipeline YAML (CLIP model, decoding)")
    c.add_argument("--data-dir", type=Path, default=None)
    add_artifact_args(c)
    c.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (>= 0)")
    c.add_argument("--skip-bad-images", action="store_true", help="skip (and list) unreadable or oversized images")
    c.add_argument("--json", action="store_true", help="print one JSON list of {file, caption} instead of lines")
    c.set_defaults(func=run_caption)


def add_artifact_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="champion|latest|VERSION",
                   help="registered model version whose checkpoint and datastore to use (default: champion, "
                        "when the data dir has a model registry)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="'train' artifact folder (default: the model's, else the newest full text-only checkpoint)")
    p.add_argument("--index", type=Path, default=None,
                   help="'index' artifact folder (default: the model's, else the newest datastore of the "
                        "checkpoint's CLIP model)")


def _newest(store: ArtifactStore, stage: str, accept) -> ArtifactRef:
    # The store skips damaged artifacts and names them (in a warning, or in the error when none is left).
    flag = "checkpoint" if stage == "train" else stage
    return store.newest(stage, accept, fix=f"run `tomcap demo` (or the pipeline) first, or pass --{flag}")


def resolve_artifacts(args: argparse.Namespace, data_dir: Path) -> tuple[ArtifactRef, ArtifactRef]:
    """The checkpoint and datastore given, else the registered model's (``--model``, default the champion
    when there is a registry), else the newest suitable ones in the data dir."""
    from ..artifacts import ArtifactStore, load_ref
    from ..registry import CHAMPION, Registry

    registry = Registry(data_dir)
    model = args.model or (CHAMPION if registry.state().aliases.get(CHAMPION) else None)
    if model is not None and not (args.checkpoint and args.index):
        refs = registry.resolve(model)
        return (load_ref(args.checkpoint, "train") if args.checkpoint else refs["checkpoint"],
                load_ref(args.index, "index") if args.index else refs["datastore"])
    store = ArtifactStore(data_dir)
    train = load_ref(args.checkpoint, "train") if args.checkpoint else _newest(
        store, "train", lambda m: all(m.config.get(k) == v for k, v in FULL_RECIPE.items()))
    clip_fp = train.manifest().info.get("clip_model_fingerprint")
    index = load_ref(args.index, "index") if args.index else _newest(
        store, "index", lambda m: m.info.get("model_fingerprint") == clip_fp)
    return train, index


def decode_config(cfg: PipelineConfig, guidance: float | None) -> GenerateConfig:
    """The config's generation section with ``--guidance`` applied."""
    if guidance is None:
        return cfg.generate
    if not guidance >= 0:  # also refuses nan
        raise ConfigError(f"--guidance {guidance} is negative or not a number",
                          fix="pass a guidance scale >= 0 (1 = no guidance)")
    from ..generate.sweep import with_guidance

    return with_guidance(cfg.generate, guidance)


def run_generate_cmd(args: argparse.Namespace) -> int:
    from ..pipeline import load_given, run_until

    cfg, data_dir = load_config(args)
    cfg = cfg.model_copy(update={"generate": decode_config(cfg, args.guidance)})
    train, index = resolve_artifacts(args, data_dir)
    given = {"train": train, "index": index}
    if args.images is not None:
        given["test_images"] = load_given("test_images", args.images)
    ref = run_until(cfg, data_dir, "generate", given, force={"generate"} if args.force else set())["generate"]
    report(ref, args, [f"results: {ref.dir / 'results.json'}"])
    return 0


def run_caption(args: argparse.Namespace) -> int:
    import numpy as np

    from ..embed.images import encode_images
    from ..embed.stage import clip_for, model_fingerprint
    from ..generate.session import CaptionSession, region_embeddings
    from ..settings import load_pipeline_config

    cfg = load_pipeline_config(args.config)
    data_dir = cfg.resolved_data_dir(args.data_dir)
    train, index = resolve_artifacts(args, data_dir)
    gen, clip_cfg = decode_config(cfg, args.guidance), cfg.test_images
    session = CaptionSession.open(gen, train, index, clip_cfg, model_fingerprint(clip_cfg))
    enc = encode_images(clip_for(clip_cfg), args.image, names=[str(p) for p in args.image],
                        batch_size=clip_cfg.batch_size, precision=clip_cfg.precision, progress=False,
                        skip_bad_images=args.skip_bad_images, skip_hint="pass --skip-bad-images")
    for name, reason in enc.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    images = [args.image[i] for i in enc.kept]
    if not images:
        raise InputDataError("no readable image to caption", path=args.image[0], fix="pass readable image files")
    emb = enc.embeddings
    # Through the stored dtype, as the generation stage reads embeddings: same caption for the same image.
    emb = emb.astype(clip_cfg.dtype).astype(np.float32)
    if gen.regions.enabled:
        emb = region_embeddings(gen, clip_cfg, images, emb)
    caps, _ = session.caption_all(emb, progress=False)
    if args.json:
        print(json.dumps([{"file": str(p), "caption": c.text} for p, c in zip(images, caps)]))
        return 0
    for path, cap in zip(images, caps):
        print(f"{path}\t{' '.join(cap.text.split())}")  # one line per image, whatever the decoder emitted
    return 0
