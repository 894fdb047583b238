"""``tomcap embed`` (corpus -> text embeddings), ``tomcap embed-images`` (folder -> image embeddings)."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import StageConfig, validate_config
from .common import add_stage_args, load_config, report

if TYPE_CHECKING:
    from ..settings import PipelineConfig

C = TypeVar("C", bound=StageConfig)


def override(section: C, source: str = "command line", **updates: Any) -> C:
    """The config section with the command line's non-None values replacing its fields (validated)."""
    changes = {k: v for k, v in updates.items() if v is not None}
    if not changes:
        return section
    return validate_config(type(section), {**section.model_dump(), **changes}, source=source)


def with_section(cfg: PipelineConfig, section: str, **updates: Any) -> PipelineConfig:
    """``cfg`` with ``override`` applied to one section."""
    return cfg.model_copy(update={section: override(getattr(cfg, section), **updates)})


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="open_clip model name (see `tomcap models clip`)")
    p.add_argument("--pretrained", help="open_clip pretrained tag or local weights file")
    p.add_argument("--dtype", choices=["float16", "float32"], help="on-disk embedding dtype")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="encoder autocast precision")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", help="torch device (default: cuda if present, else cpu)")


def _model_updates(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": args.model, "pretrained": args.pretrained, "dtype": args.dtype, "precision": args.precision,
            "batch_size": args.batch_size, "device": args.device}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="CLIP text embeddings of the corpus (incremental, sharded .npy)")
    add_stage_args(p)
    p.add_argument("--corpus", type=Path, help="corpus artifact folder (default: build/reuse the config's corpus)")
    _add_model_args(p)
    p.add_argument("--no-reuse", action="store_true", help="encode every caption even if an earlier artifact has it")
    p.set_defaults(func=run)

    q = sub.add_parser("embed-images", help="CLIP image embeddings of a folder of images")
    add_stage_args(q)
    q.add_argument("--images", type=Path, help="folder of images (default: embed_images.images)")
    _add_model_args(q)
    q.add_argument("--skip-bad-images", action="store_true", default=None,
                   help="skip unreadable images instead of failing")
    q.add_argument("--image-id-regex", help="regex whose group 1 is the image id (default: file stem)")
    q.set_defaults(func=run_images)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import load_given, run_until

    cfg, data_dir = load_config(args)
    cfg = with_section(cfg, "embed", **_model_updates(args), reuse=False if args.no_reuse else None)
    given = {"corpus": load_given("corpus", args.corpus)} if args.corpus else {}
    # run_until validates every stage's config (e.g. the CLIP model name) before the corpus is built.
    ref = run_until(cfg, data_dir, "embed", given, force={"embed"} if args.force else set())["embed"]
    info = ref.manifest().info
    report(ref, args, [f"model: {info['model_fingerprint']} dim {info['dim']} {info['dtype']}",
                       f"truncated batches: {info['truncated']}, encode {info['encode_s']} s"])
    return 0


def run_images(args: argparse.Namespace) -> int:
    from ..embed import run_embed_images

    cfg, data_dir = load_config(args)
    img_cfg = override(cfg.embed_images, **_model_updates(args),
                       images=str(args.images.resolve()) if args.images else None,
                       skip_bad_images=args.skip_bad_images, image_id_regex=args.image_id_regex)
    ref = run_embed_images(img_cfg, data_dir, force=args.force)
    info = ref.manifest().info
    report(ref, args, [f"model: {info['model_fingerprint']} dim {info['dim']}"]
           + [f"skipped {s['file']}: {s['reason']}" for s in info["skipped_files"]])
    return 0

