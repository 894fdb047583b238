"""`tomcap world generate|build-models|probe`: the embedded offline world and its two shipped models."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
import json
from pathlib import Path

from ..constants import SHARED_CAPTIONS_DIR, SHIPPED_MODELS_DIR
from ..settings import load_pipeline_config

REAL_CAPTIONS_DEFAULT = SHARED_CAPTIONS_DIR / "karpathy" / "coco_karpathy_val.json"
"""Real captions mixed into the GPT-2 corpus when present (Karpathy *val*: the demo evaluates on test)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("world", help="embedded offline world: generate data, build or probe the shipped models")
    sub = p.add_subparsers(dest="world_command", required=True, metavar="WORLD_COMMAND")

    g = sub.add_parser("generate", help="write caption-only corpus (JSONL) + test split (PNG + COCO JSON)")
    g.add_argument("--out", type=Path, required=True, help="output folder")
    _world_args(g)
    g.set_defaults(func=run_generate)

    b = sub.add_parser("build-models", help="train the world CLIP and GPT-2 from scratch, probe them, write the card")
    b.add_argument("--out", type=Path, default=SHIPPED_MODELS_DIR, help="models folder (default: data/models)")
    b.add_argument("--only", choices=("clip", "gpt2"), default=None, help="train one model (the other must exist)")
    b.add_argument("--real-captions", type=Path, default=REAL_CAPTIONS_DEFAULT,
                   help="Karpathy JSON mixed into the GPT-2 corpus if it exists")
    b.add_argument("--clip-steps", type=int, default=None, help="override the CLIP training steps")
    b.add_argument("--clip-finetune-steps", type=int, default=None, help="override the CLIP phase-2 steps (0: none)")
    b.add_argument("--clip-extra-steps", type=int, default=None,
                   help="override the steps of every CLIP phase after phase 2 (0: none)")
    b.add_argument("--gpt2-steps", type=int, default=None, help="override the GPT-2 training steps")
    b.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of both trainings (recorded in the card)")
    b.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    _world_args(b)
    b.set_defaults(func=run_build)

    q = sub.add_parser("probe", help="re-measure the model card's numbers from the model files")
    q.add_argument("--models-dir", type=Path, default=SHIPPED_MODELS_DIR, help="folder with the world models")
    q.add_argument("--n-images", type=int, default=None, help="test images to probe (default: the whole test split)")
    q.add_argument("--gpt2-heldout-scenes", type=int, default=None, help="held-out scenes for perplexity")
    q.add_argument("--device", default=None)
    q.add_argument("--json", action="store_true", help="print the metrics as one JSON object on the last line")
    _world_args(q)
    q.set_defaults(func=run_probe)


def _world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="pipeline YAML; its `world:` section is used")
    p.add_argument("--seed", type=int, default=None, help="override world.seed")
    p.add_argument("--n-train", type=int, default=None, help="override world.n_train_scenes")
    p.add_argument("--n-test", type=int, default=None, help="override world.n_test_images")


def _world_config(args: argparse.Namespace):
    from ..config import validate_config
    from ..world.config import WorldConfig

    base = load_pipeline_config(args.config).world.model_dump()
    for key, val in (("seed", args.seed), ("n_train_scenes", args.n_train), ("n_test_images", args.n_test)):
        if val is not None:
            base[key] = val
    return validate_config(WorldConfig, base, source="command line")


def run_generate(args: argparse.Namespace) -> int:
    from ..world.export import generate_world

    paths = generate_world(args.out, _world_config(args))
    info = json.loads(paths.info.read_text())
    print(f"world: {paths.root}")
    print(f"  corpus: {paths.corpus_file} ({info['n_train_captions']} captions of {info['n_train_scenes']} scenes)")
    print(f"  test: {paths.test_annotations} ({info['n_test_images']} images in {paths.test_images_dir})")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from ..world.config import ClipTrainConfig, Gpt2TrainConfig
    from ..world.models import PARTS, build_models

    overrides = {"steps": args.clip_steps, "finetune_steps": args.clip_finetune_steps, "threads": args.threads}
    clip_cfg = ClipTrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    if args.clip_extra_steps is not None:
        phases = [] if args.clip_extra_steps == 0 else [p.model_copy(update={"steps": args.clip_extra_steps})
                                                         for p in clip_cfg.extra_phases]
        clip_cfg = clip_cfg.model_copy(update={"extra_phases": tuple(phases)})
    gpt2_overrides = {"steps": args.gpt2_steps, "threads": args.threads}
    gpt2_cfg = Gpt2TrainConfig(**{k: v for k, v in gpt2_overrides.items() if v is not None})
    parts = (args.only,) if args.only else PARTS
    metrics = build_models(args.out, _world_config(args), clip_cfg, gpt2_cfg, real_captions=args.real_captions,
                           parts=parts, device=args.device)
    print(f"world models: {args.out}")
    print(json.dumps(metrics, indent=2))
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from ..world.models import probe_models

    world = _world_config(args)
    metrics = probe_models(args.models_dir, world, n_images=args.n_images or world.n_test_images, device=args.device,
                           gpt2_heldout_scenes=args.gpt2_heldout_scenes)
    for model, vals in metrics.items():
        print(model)
        for k, v in vals.items():
            print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
    return 0
