"""``tomcap evaluate``: score captions against references (COCO metrics, CLIP metrics) and report."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
import glob
import json
from pathlib import Path

from ..config import validate_config
from ..evaluate import EvaluateConfig, evaluate_to_dir, run_evaluate
from ..evaluate.report import score_names
from .common import add_stage_args, load_config, report

_GLOB_CHARS = "*?["


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate",
                       help="score captions: BLEU/METEOR/ROUGE-L/CIDEr (pycocoevalcap-identical), CLIP metrics")
    add_stage_args(p)
    p.add_argument("--refs", type=Path, default=None,
                   help="references: COCO annotations, Karpathy/NoCaps list or Parquet (omit for paired files)")
    p.add_argument("--results", action="append", default=[], metavar="RESULTS",
                   help="COCO results file, paired file or generation artifact folder; repeat (or use a quoted "
                        "glob) to score a sweep against the same references")
    p.add_argument("--out", type=Path, default=None,
                   help="write the evaluation folder here (default: the data dir's artifact store)")
    p.add_argument("--clip-model", default=None, help="open_clip model name for CLIPScore/RefCLIPScore/recall")
    p.add_argument("--clip-pretrained", default=None, help="pretrained tag or weights file of --clip-model")
    p.add_argument("--images", type=Path, default=None, help="folder of the evaluated images (for CLIP metrics)")
    p.add_argument("--refs-key", default=None, help="references field of paired files (default: detect)")
    p.add_argument("--pred-key", default=None, help="prediction field of paired files (default: detect)")
    p.add_argument("--id-key", default=None, help="image id field of paired files (default: detect)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (saves the jar's ~8 s table load)")
    p.add_argument("--no-spice", action="store_true", help="skip SPICE even if its jars are installed")
    p.add_argument("--meteor-workers", type=int, default=None,
                   help="METEOR processes (default: one per core, at most 2)")
    p.add_argument("--no-meteor-cache", action="store_true",
                   help="do not keep a METEOR paraphrase table filtered to these references in <data-dir>/cache")
    p.add_argument("--require-full-coverage", action="store_true", default=None,
                   help="refuse results that caption only part of the reference images (default: warn)")
    p.set_defaults(func=run)


def _expand(values: list[str]) -> list[Path]:
    out: list[Path] = []
    for v in values:
        if any(c in v for c in _GLOB_CHARS) and not Path(v).exists():
            matches = sorted(glob.glob(v))
            out += [Path(m).resolve() for m in matches] or [Path(v)]
        else:
            out.append(Path(v).resolve())
    return out


def evaluate_config(base: EvaluateConfig, args: argparse.Namespace) -> EvaluateConfig:
    """The config's evaluate section with the command line's options on top."""
    data = base.model_dump()
    overrides = {
        "refs": args.refs.resolve() if args.refs else None,
        "clip_model": args.clip_model, "clip_pretrained": args.clip_pretrained,
        "images": args.images.resolve() if args.images else None,
        "refs_key": args.refs_key, "pred_key": args.pred_key, "id_key": args.id_key,
        "meteor_workers": args.meteor_workers, "require_full_coverage": args.require_full_coverage,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.results:
        data["results"] = _expand(args.results)
    if args.no_meteor:
        data["meteor"] = False
    if args.no_meteor_cache:
        data["meteor_cache"] = False
    if args.no_spice:
        data["spice"] = False
    return validate_config(EvaluateConfig, data, source="tomcap evaluate")


def run(args: argparse.Namespace) -> int:
    cfg, data_dir = load_config(args)
    eval_cfg = evaluate_config(cfg.evaluate, args)
    if args.out is not None:
        ref = evaluate_to_dir(eval_cfg, args.out, data_dir=data_dir)
    else:
        ref = run_evaluate(eval_cfg, data_dir, force=args.force)
    info = ref.manifest().info
    lines = []
    for folder, metrics in info.get("metrics", {}).items():
        scores = "  ".join(f"{k} {metrics[k]:.3f}" for k in score_names(metrics))
        lines.append(f"{folder}: {metrics.get('n_images')} images  {scores}")
    timings = info.get("timings", {})
    if timings:
        lines.append("timings (s): " + json.dumps(timings))
    report(ref, args, lines)
    return 0
