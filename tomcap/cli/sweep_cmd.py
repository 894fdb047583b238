"""``tomcap sweep-guidance``: caption with several CFG scales, score them together, plot the trade-off."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..artifacts import load_ref
from ..errors import ConfigError
from .common import add_stage_args, load_config
from .generate_cmd import _add_artifact_args, _decode_config, resolve_artifacts

DEFAULT_SCALES = "0,1,1.5,2,3,4"
X_METRIC, Y_METRIC = "CIDEr", "CLIPScore"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep-guidance", help="caption with several CFG scales, evaluate, plot the Pareto front")
    add_stage_args(p)
    _add_artifact_args(p)
    p.add_argument("--images", type=Path, required=True, help="'embed_images' artifact folder of the test images")
    p.add_argument("--scales", default=DEFAULT_SCALES, help="comma-separated guidance scales (>= 0)")
    p.add_argument("--out", type=Path, default=None, help="PNG of the Pareto plot (default: beside the evaluation)")
    p.set_defaults(func=run)


def parse_scales(text: str) -> list[float]:
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--scales '{text}' is not a comma-separated list of numbers", fix="e.g. --scales 0,1,2,3") from None
    if not scales or min(scales) < 0:
        raise ConfigError(f"--scales '{text}' needs at least one scale, all >= 0", fix="e.g. --scales 0,1,2,3")
    return scales


def run(args: argparse.Namespace) -> int:
    from ..evaluate.stage import run_evaluate
    from ..generate.stage import run_generate
    from ..generate.sweep import pareto_front, plot_pareto

    scales = parse_scales(args.scales)
    cfg, data_dir = load_config(args)
    train, index = resolve_artifacts(args, data_dir)
    images = load_ref(args.images, "embed_images")
    gens = [run_generate(_decode_config(cfg, s), data_dir, train=train, index=index, images=images) for s in scales]
    ev_cfg = cfg.evaluate.model_copy(update={"results": [g.dir for g in gens]})
    ev = run_evaluate(ev_cfg, data_dir)
    runs = list(json.loads(ev.file("sweep.json").read_text()).values()) if len(gens) > 1 else [
        {"metrics": json.loads(ev.file("metrics.json").read_text())}]
    xs = [r["metrics"].get(X_METRIC, 0.0) for r in runs]
    y_name = Y_METRIC if all(Y_METRIC in r["metrics"] for r in runs) else "Bleu_4"
    ys = [r["metrics"].get(y_name, 0.0) for r in runs]
    out = args.out or (Path(ev.path).parent / f"{ev.key}-guidance-pareto.png")
    plot_pareto(scales, xs, ys, X_METRIC, y_name, out)
    front = set(pareto_front(xs, ys))
    print(f"{'scale':>6} {X_METRIC:>8} {y_name:>10}  front")
    for i, s in enumerate(scales):
        print(f"{s:6g} {xs[i]:8.4f} {ys[i]:10.4f}  {'*' if i in front else ''}")
    print(f"evaluation: {ev.path}\nplot: {out}")
    return 0
