"""``tomcap generate`` (stage 6), ``tomcap caption`` (image files -> captions) and ``tomcap pipeline``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

import numpy as np

from ..artifacts import ArtifactRef, ArtifactStore, load_ref
from ..constants import DEMO_CONFIG_FILE
from ..errors import ConfigError
from ..settings import RunnerKind, load_pipeline_config
from .common import add_stage_args, load_config, prefect_defaults, report

FULL_RECIPE = {"query": "text", "gap_correction": True, "noise": True, "retrieval_prompt": True, "retrieval_cross": True}
"""Training switches of the full text-only TOMCap model (the default checkpoint of `tomcap caption`)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="caption an image-embedding artifact with a checkpoint and a datastore")
    add_stage_args(p)
    _add_artifact_args(p)
    p.add_argument("--images", type=Path, required=True, help="'embed_images' artifact folder of the images to caption")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (>= 0)")
    p.set_defaults(func=run_generate_cmd)

    c = sub.add_parser("caption", help="print captions for image files")
    c.add_argument("image", type=Path, nargs="+")
    c.add_argument("--config", type=Path, default=DEMO_CONFIG_FILE, help="pipeline YAML (CLIP model, decoding)")
    c.add_argument("--data-dir", type=Path, default=None)
    _add_artifact_args(c)
    c.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (>= 0)")
    c.set_defaults(func=run_caption)

    r = sub.add_parser("pipeline", help="run the whole pipeline as Prefect flows (prepare, train, evaluate)")
    r.add_argument("--config", type=Path, required=True)
    r.add_argument("--data-dir", type=Path, default=None)
    r.add_argument("--runner", choices=get_args(RunnerKind), default=None,
                   help="task runner of the scale-out tasks (embedding row ranges; see embed.map_rows)")
    r.add_argument("--dask-address", default=None, help="Dask scheduler address (default: a LocalCluster)")
    r.add_argument("--workers", type=int, default=None, help="LocalCluster workers / threads")
    r.add_argument("--map-rows", type=int, default=None, help="embed the corpus in tasks of this many rows")
    r.set_defaults(func=run_pipeline)


def _add_artifact_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="'train' artifact folder (default: the newest full text-only checkpoint in the data dir)")
    p.add_argument("--index", type=Path, default=None,
                   help="'index' artifact folder (default: the newest datastore of the checkpoint's CLIP model)")


def _newest(store: ArtifactStore, stage: str, accept) -> ArtifactRef:
    # The store skips damaged artifacts and names them (in a warning, or in the error when none is left).
    return store.newest(stage, accept, fix=f"run `tomcap demo` (or the pipeline) first, or pass "
                                         f"--{'checkpoint' if stage == 'train' else stage}")


def resolve_artifacts(args: argparse.Namespace, data_dir: Path) -> tuple[ArtifactRef, ArtifactRef]:
    store = ArtifactStore(data_dir)
    train = load_ref(args.checkpoint, "train") if args.checkpoint else _newest(
        store, "train", lambda m: all(m.config.get(k) == v for k, v in FULL_RECIPE.items()))
    clip_fp = train.manifest().info.get("clip_model_fingerprint")
    index = load_ref(args.index, "index") if args.index else _newest(
        store, "index", lambda m: m.info.get("model_fingerprint") == clip_fp)
    return train, index


def _decode_config(cfg, guidance: float | None):
    if guidance is None:
        return cfg.generate
    if guidance < 0:
        raise ConfigError(f"--guidance {guidance} is negative", fix="pass a guidance scale >= 0 (1 = no guidance)")
    decode = cfg.generate.decode.model_copy(update={"guidance_scale": guidance})
    return cfg.generate.model_copy(update={"decode": decode})


def run_generate_cmd(args: argparse.Namespace) -> int:
    from ..generate.stage import run_generate

    cfg, data_dir = load_config(args)
    train, index = resolve_artifacts(args, data_dir)
    ref = run_generate(_decode_config(cfg, args.guidance), data_dir, train=train, index=index,
                       images=load_ref(args.images, "embed_images"), force=args.force)
    report(ref, args, [f"results: {ref.dir / 'results.json'}"])
    return 0


def run_caption(args: argparse.Namespace) -> int:
    from ..embed.images import encode_images
    from ..embed.stage import clip_for
    from ..generate.captioner import caption_batch
    from ..generate.stage import check_same_clip_fingerprints
    from ..index import Datastore
    from ..model import load_adaptor

    cfg = load_pipeline_config(args.config)
    data_dir = cfg.resolved_data_dir(args.data_dir)
    train, index = resolve_artifacts(args, data_dir)
    store = Datastore.open(index)
    clip = clip_for(cfg.test_images)
    check_same_clip_fingerprints(train, store, clip_fingerprint=_clip_fp(cfg))
    emb = encode_images(clip, args.image, names=[str(p) for p in args.image], progress=False).embeddings
    model = load_adaptor(train.dir)
    k = int(model.config.k)
    rows = store.search(np.asarray(emb, np.float32), k).rows
    texts = [store.texts(r) for r in rows]
    gen = _decode_config(cfg, args.guidance)
    caps = caption_batch(model, emb, texts, store.embeddings(rows), gen.decode)
    for path, cap in zip(args.image, caps):
        print(f"{path}\t{cap.text}")
    return 0


def _clip_fp(cfg) -> str:
    from ..embed.stage import model_fingerprint

    return model_fingerprint(cfg.test_images)


def run_pipeline(args: argparse.Namespace) -> int:
    cfg = load_pipeline_config(args.config)
    runner = {"kind": args.runner, "address": args.dask_address, "workers": args.workers}
    if args.dask_address is not None and args.runner is None:
        runner["kind"] = "dask"
    runner = {k: v for k, v in runner.items() if v is not None}
    embed = {"map_rows": args.map_rows} if args.map_rows is not None else {}
    if runner.get("kind") == "dask" and not (args.map_rows or cfg.embed.map_rows):
        raise ConfigError("--runner dask maps the embedding over row ranges, but embed.map_rows is not set",
                          fix="pass --map-rows N (or set embed.map_rows in the config)")
    cfg = cfg.model_copy(update={"runner": cfg.runner.model_copy(update=runner),
                                 "embed": cfg.embed.model_copy(update=embed)})
    prefect_defaults()
    from flows.pipeline import tomcap_pipeline

    ref = tomcap_pipeline(cfg, str(cfg.resolved_data_dir(args.data_dir)))
    print(f"evaluation: {ref.path}")
    return 0
