"""The demo's world and wired pipeline config, built by the library stages (no Prefect), for the benchmarks
that re-run parts of the demo (tune_decoding, train_steps_curve, demo_seeds, condition_tokens, tune_adaptor)."""
from __future__ import annotations

import argparse
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def demo_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every demo-rerunning benchmark takes: --config, --root (data dir, reused between runs), --out."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", type=Path, default=DEMO_CONFIG)
    ap.add_argument("--root", type=Path, required=True, help="data dir (reused between runs)")
    ap.add_argument("--out", type=Path, required=True)
    return ap


def wired_demo(config: Path, data_dir: str):
    """(world artifact, ``config``'s pipeline config wired to it) - what flows/demo.py builds before its variants."""
    from tomcap.demo.wiring import demo_pipeline_config
    from tomcap.settings import load_pipeline_config
    from tomcap.world.stage import run_world

    base = load_pipeline_config(config)
    world = run_world(base.world, data_dir)
    return world, demo_pipeline_config(base, world, run_world(base.demo.unpaired_world, data_dir))


def scoring_setup(config: Path, data_dir: str):
    """(world, wired config without METEOR) with the shared stages built at full threads and this process then held
    to one thread, as flows/demo.py runs each variant: the start of the scripts that score variants per seed."""
    from tomcap.pipeline import run_until
    from tomcap.threads import limit_threads

    world, wired = wired_demo(config, data_dir)
    wired = wired.model_copy(update={"evaluate": wired.evaluate.model_copy(update={"meteor": False})})
    run_until(wired, data_dir, "gap")
    limit_threads(1)
    return world, wired


def variant_runs(world, wired, data_dir: str, seed: int, split: str, names):
    """({name: (metrics, per-image metrics, stage refs)} of the demo variants ``names`` trained with ``seed`` and
    scored on ``split``, {variant: its pipeline config}); stages come from the cache where they exist."""
    from tomcap.demo.report import variant_metrics
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.demo.variants import all_variants
    from tomcap.pipeline import run_until

    variants = all_variants(wired.model_copy(update={"train": wired.train.model_copy(update={"seed": seed})}))
    got = {}
    for name in names:
        done = run_until(split_pipeline_config(variants[name], world, split), data_dir, "evaluate")
        got[name] = (*variant_metrics(world, done["evaluate"], done["generate"], split), done)
    return got, variants


def paired_by_image(a: dict, b: dict, ids=None) -> dict:
    """Paired bootstrap interval of mean(a) - mean(b) over ``ids`` (default: every image id both score);
    ``a``, ``b``: image id -> a per-image metric, as ``variant_metrics`` gives them."""
    from tomcap.evaluate import bootstrap

    ids = sorted(set(a) & set(b)) if ids is None else ids
    return bootstrap.paired_difference([a[i] for i in ids], [b[i] for i in ids])


def write_results(out: Path, result: dict, markdown: str) -> None:
    """``result`` as JSON at ``out``, ``markdown`` beside it (.md), and the markdown printed."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)


def full_variant(config: Path, data_dir: str):
    """(world artifact, the demo's ``full`` variant without METEOR): the base the validation sweeps vary."""
    from tomcap.demo.variants import demo_variants

    world, wired = wired_demo(config, data_dir)
    base = demo_variants(wired)["full"]
    return world, base.model_copy(update={"evaluate": base.evaluate.model_copy(update={"meteor": False})})


def train_and_score(cfg, data_dir: str, world, split: str, per_image: dict | None = None):
    """Train ``cfg`` (cached), caption and score ``split`` with it: (stage refs up to train, metrics,
    results.json, retrieved.json of the captions); ``per_image`` (a dict) receives metric -> {image id: value}."""
    import json

    from tomcap.demo.report import variant_metrics
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.pipeline import reusable, run_until

    refs = run_until(cfg, data_dir, "train")
    scfg = split_pipeline_config(cfg, world, split)
    done = run_until(scfg, data_dir, "evaluate", reusable(cfg, refs, scfg))
    metrics, by_image = variant_metrics(world, done["evaluate"], done["generate"], split)
    if per_image is not None:
        per_image.update(by_image)
    results = json.loads(done["generate"].file("results.json").read_text(encoding="utf-8"))
    retrieved = json.loads(done["generate"].file("retrieved.json").read_text(encoding="utf-8"))
    return refs, metrics, results, retrieved
