"""Gap sweep (issue 20): does the gap correction's gain grow with the world CLIP's modality gap?

The same world CLIP with its image tower shifted post hoc (Liang et al. 2022, "Mind the Gap", sec. 4):
every image embedding's unnormalised output is translated by a constant c = -s * r * delta_hat, where
delta_hat is the direction mean image embedding - mean text embedding (L2-normalised embeddings of the
unpaired images and of the corpus captions, never the test split) and r the mean unnormalised image-feature
norm. The world CLIP's image tower is open_clip's ModifiedResNet, whose output is the attention pool's
``c_proj`` linear layer, so the shift is exact as a change of ``visual.attnpool.c_proj.bias`` (no
LayerNorm/proj pseudo-inverse needed; a ViT tower would need ``ln_post.bias`` = c @ pinv(proj)).
``s`` is bisected so that the centroid gap (tomcap.gapmath.centroid_gap) hits each target; the text tower
is untouched, so text embeddings, the datastore and the corpus are the same for every CLIP.

For each CLIP the demo's ``full`` and ``no_correction`` variants (configs/demo.yaml as committed, only the
CLIP weights changed) are trained, captioned and scored on the test split through the library's stage graph
(``tomcap.pipeline.run_until``, composed as flows/demo.py does, without Prefect).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gap_sweep.py \
        --out benchmarks/results/gap_sweep.json --work-dir /tmp/gap_sweep
    ... --quick   # tiny world, a few training steps: a smoke run of the whole path
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "demo.yaml"
DEFAULT_WEIGHTS = REPO / "data" / "models" / "tomcap-world-clip.safetensors"
SHIFT_KEY = "visual.attnpool.c_proj.bias"
"""The image tower's last linear place: ModifiedResNet's output is attnpool's c_proj (weight @ x + bias)."""
VIT_SHIFT_KEY = "visual.ln_post.bias"
VARIANTS = ("full", "no_correction")
METRICS = ("CIDEr", "attr_f1")
SPLIT = "test"
BISECT_TOL = 0.005
PROBE_KEYS = ("i2t_recall@1", "t2i_recall@1", "zero_shot_color", "zero_shot_shape", "modality_gap")
QUICK = {
    "world": {"n_train_scenes": 600, "n_test_images": 40, "n_val_images": 20, "n_novel_images": 20},
    "demo": {"unpaired_world": {"n_test_images": 60}},
    "train": {"steps": 6, "warmup_steps": 1, "eval_every": 3, "checkpoint_every": 3, "batch_size": 16},
    "evaluate": {"meteor": False},
}

log = logging.getLogger("gap_sweep")


# ---------------------------------------------------------------- weight surgery (tests/test_gap_sweep.py)

def shift_key(state: dict[str, torch.Tensor]) -> str:
    """The bias whose change translates the image embedding exactly; other architectures are refused."""
    if SHIFT_KEY in state:
        return SHIFT_KEY
    if VIT_SHIFT_KEY in state:
        raise NotImplementedError(f"a ViT image tower: shift {VIT_SHIFT_KEY} by c @ pinv(visual.proj) instead")
    raise KeyError(f"no {SHIFT_KEY} in the state dict: find the image tower's last linear place first")


def shifted_state(state: dict[str, torch.Tensor], c: np.ndarray) -> dict[str, torch.Tensor]:
    """A copy of ``state`` whose image embeddings (unnormalised) are translated by ``c``, in the stored dtype."""
    key = shift_key(state)
    bias = state[key]
    if bias.shape != (len(c),):
        raise ValueError(f"{key} has shape {tuple(bias.shape)}, the shift has {len(c)} dims")
    out = dict(state)
    out[key] = (bias.double() + torch.from_numpy(np.asarray(c, np.float64))).to(bias.dtype).contiguous()
    return out


def realised_shift(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> np.ndarray:
    """The shift the stored (rounded) bias really applies."""
    key = shift_key(before)
    return (after[key].double() - before[key].double()).numpy()


def save_clip(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, Any]) -> Path:
    """fp16 safetensors with one 'tomcap' metadata key, as tomcap/world/train_clip.py:_save writes them."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}, str(tmp),
              metadata={"tomcap": json.dumps(metadata, sort_keys=True)})
    os.replace(tmp, path)
    return path


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def gap_with_shift(feats: np.ndarray, text: np.ndarray, c: np.ndarray) -> float:
    """Centroid gap between L2-normalised (feats + c) and the (already normalised) text embeddings."""
    from tomcap.gapmath import centroid_gap

    return centroid_gap(l2n(feats + c), text)


def shift_direction(feats: np.ndarray, text: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit direction mean image - mean text of the normalised embeddings, mean unnormalised feature norm)."""
    delta = l2n(feats).mean(0) - text.mean(0)
    return delta / np.linalg.norm(delta), float(np.linalg.norm(feats, axis=1).mean())


def bisect_shift(feats: np.ndarray, text: np.ndarray, target: float, tol: float = BISECT_TOL,
                 s_max: float = 8.0, step: float = 0.05, iters: int = 60) -> tuple[float, np.ndarray, float]:
    """(s, c, gap): c = -s * r * delta_hat with the centroid gap within ``tol`` of ``target``.

    The gap falls as s grows from 0 until the image mean passes the text mean (on the world CLIP its
    floor is ~0.035 at s ~0.85), then grows again; the first crossing is taken (s >= 0 shrinks the gap,
    s < 0 widens it)."""
    direction, r = shift_direction(feats, text)

    def gap(s: float) -> float:
        return gap_with_shift(feats, text, -s * r * direction)

    g0 = gap(0.0)
    sign = 1.0 if target < g0 else -1.0
    lo, hi = 0.0, step
    while sign * (gap(sign * hi) - target) > 0:  # small steps: past the text mean the gap grows again
        lo, hi = hi, hi + step
        if hi > s_max:
            raise ValueError(f"no shift up to s={s_max} reaches centroid gap {target} (gap at s=0: {g0:.4f})")
    for _ in range(iters):
        mid = (lo + hi) / 2
        g = gap(sign * mid)
        if abs(g - target) <= tol:
            return sign * mid, -sign * mid * r * direction, g
        lo, hi = (mid, hi) if sign * (g - target) > 0 else (lo, mid)
    raise ValueError(f"bisection for gap {target} did not converge (last {g:.4f})")


def image_features(clip: Any, files: list[Path], batch_size: int = 64) -> np.ndarray:
    """Unnormalised image embeddings, preprocessed as tomcap.embed.images.encode_images does."""
    from PIL import Image

    out = []
    with torch.no_grad():
        for i in range(0, len(files), batch_size):
            batch = torch.stack([clip.preprocess(Image.open(f).convert("RGB")) for f in files[i:i + batch_size]])
            out.append(clip.model.encode_image(batch.to(clip.device)).double().cpu().numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------- pipeline

def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def data_dir_for(root: Path, weights: Path) -> str:
    """One data dir per CLIP: the text tower is the same in all, and an embed artifact's fingerprint is its
    content, so a shared dir would hand one CLIP's datastore (whose info names the other CLIP) to the next
    CLIP's training, which refuses it. The worlds live in their own dir (their refs are absolute paths)."""
    return str(root / f"clip-{sha256(weights)[:16]}")


def pipeline_config(base: Any, weights: Path, train_seed: int | None = None) -> Any:
    """``base`` with only the CLIP weights changed (every CLIP section, as ``clip:`` spreads them), and the
    training seed where one is given."""
    from tomcap.config import validate_config
    from tomcap.settings import PipelineConfig

    data = base.with_clip(pretrained=str(weights)).model_dump(mode="json")
    if train_seed is not None:
        data["train"]["seed"] = train_seed
    return validate_config(PipelineConfig, data, source=f"gap sweep ({weights.name})")


def _deep_update(data: dict, changes: dict) -> dict:
    out = dict(data)
    for k, v in changes.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_base(config: Path, quick: bool) -> Any:
    from tomcap.config import validate_config
    from tomcap.settings import PipelineConfig, load_pipeline_config

    cfg = load_pipeline_config(config)
    if quick:
        cfg = validate_config(PipelineConfig, _deep_update(cfg.model_dump(mode="json"), QUICK), source="--quick")
    return cfg


def run_clip(cfg: Any, data_dir: str, world: Any, unpaired: Any) -> dict[str, Any]:
    """flows/demo.py's composition for VARIANTS on the test split: shared stages once, then per variant."""
    from tomcap.demo.report import split_statistics, variant_metrics
    from tomcap.demo.splits import split_pipeline_config
    from tomcap.demo.variants import all_variants
    from tomcap.demo.wiring import demo_pipeline_config
    from tomcap.pipeline import reusable, run_until

    wired = demo_pipeline_config(cfg, world, unpaired)
    refs = run_until(wired, data_dir, "gap")
    rows, per_image, keys = {}, {}, {}
    every = all_variants(wired)
    for name in VARIANTS:
        t0 = time.time()
        scfg = split_pipeline_config(every[name], world, SPLIT)
        done = run_until(scfg, data_dir, "evaluate", reusable(wired, refs, scfg))
        refs.update(reusable(scfg, done, wired))
        rows[name], per_image[name] = variant_metrics(world, done["evaluate"], done["generate"], SPLIT)
        keys[name] = {s: done[s].key for s in ("train", "generate", "evaluate")}
        log.info("%s: %s in %.0f s", name, {m: round(rows[name][m], 3) for m in METRICS}, time.time() - t0)
    stats = split_statistics(cfg.demo.report, per_image)
    info = refs["gap"].manifest().info
    return {"gap": {w: info.get(w, {}) for w in ("before", "after")}, "gap_key": refs["gap"].key,
            "metrics": rows, "intervals": stats["intervals"], "n_images": stats["n_images"],
            "full_minus_no_correction": stats["full_minus"]["no_correction"], "artifacts": keys,
            "_per_image": per_image}


def seed_mean(report_cfg: Any, per_seed: list[dict[str, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """Per-image values averaged over training seeds, then the same bootstrap (images resampled)."""
    from tomcap.demo.report import split_statistics

    avg = {name: {m: {i: float(np.mean([p[name][m][i] for p in per_seed])) for i in per_seed[0][name][m]}
                  for m in METRICS} for name in VARIANTS}
    stats = split_statistics(report_cfg, avg)
    return {"metrics": {n: {m: float(np.mean(list(v[m].values()))) for m in METRICS} for n, v in avg.items()},
            "intervals": stats["intervals"], "full_minus_no_correction": stats["full_minus"]["no_correction"]}


def clip_probe(clip: Any, world: Any) -> dict[str, float]:
    """What the shift does to the CLIP itself (the model card's probe on the test split): a constant added to
    every image embedding changes each image's text ranking by <n(c), t>, so retrieval and zero-shot may move."""
    from tomcap.world.probe import probe_clip

    with torch.no_grad():
        out = probe_clip(clip.model, clip.tokenizer, world, n_images=min(500, world.n_test_images), split=SPLIT)
    return {k: out[k] for k in PROBE_KEYS}


def make_clips(cfg: Any, data_dir: str, world: Any, unpaired: Any, weights: Path, targets: list[float],
               tol: float, clip_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One CLIP per target: the unmodified file where its gap is within ``tol``, else a shifted copy."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from tomcap.clip import load_clip
    from tomcap.demo.wiring import demo_pipeline_config
    from tomcap.embed.images import list_images
    from tomcap.embed.store import EmbeddingSet
    from tomcap.pipeline import run_until

    wired = demo_pipeline_config(pipeline_config(cfg, weights), world, unpaired)
    refs = run_until(wired, data_dir, "gap")
    es = EmbeddingSet.open(refs["embed"])
    text = np.concatenate([np.asarray(s, np.float64) for s in es.shards])
    stored_img = np.concatenate([np.asarray(s, np.float64) for s in EmbeddingSet.open(refs["embed_images"]).shards])
    ic = wired.embed_images
    files = list_images(Path(ic.images), ic.extensions, ic.max_images)  # the gap stage's unpaired images
    clip = load_clip(wired.embed.model, str(weights))
    feats = image_features(clip, files)
    direction, r = shift_direction(feats, text)
    g0 = gap_with_shift(feats, text, np.zeros_like(direction))
    check = {"unpaired_images": len(files), "text_rows": len(text), "feature_norm_mean": r, "gap_at_s0": g0,
             "gap_stage_before": refs["gap"].manifest().info["before"]["centroid_gap"],
             # the stage's embeddings may come in another row order: compare the means
             "mean_vs_stage_embeddings": float(np.abs(l2n(feats).mean(0) - stored_img.mean(0)).max())}
    log.info("base CLIP: %s", check)
    state = load_file(str(weights))
    with safe_open(str(weights), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("tomcap", "{}"))
    out = []
    for target in targets:
        if abs(g0 - target) <= tol:
            out.append({"target": target, "s": 0.0, "weights": str(weights), "gap_expected": g0, "shifted": False,
                        "clip_probe": clip_probe(clip, cfg.world)})
            continue
        s, c, g = bisect_shift(feats, text, target)
        new = shifted_state(state, c)
        applied = realised_shift(state, new)
        path = save_clip(new, clip_dir / f"tomcap-world-clip-{sha256(weights)[:16]}-gap{target:.2f}.safetensors",
                         {**meta, "gap_sweep": {"target": target, "s": s, "source_sha256": sha256(weights),
                                                "shifted": SHIFT_KEY}})
        # exactness: the saved model's unnormalised features are the base ones plus the stored bias change
        moved = load_clip(wired.embed.model, str(path))
        sub = files[:64]
        err = float(np.abs(image_features(moved, sub) - (feats[:len(sub)] + applied)).max())
        g_saved = gap_with_shift(feats, text, applied)
        log.info("target %.2f: s=%.4f gap %.4f (after fp16 rounding %.4f), max |feature error| %.2e",
                 target, s, g, g_saved, err)
        out.append({"target": target, "s": s, "weights": str(path), "gap_expected": g_saved, "shifted": True,
                    "shift_norm": float(np.linalg.norm(applied)), "feature_max_abs_error": err,
                    "fp16_rounding_max_abs": float(np.abs(applied - c).max()),
                    "clip_probe": clip_probe(moved, cfg.world)})
    return out, check


def _fmt(v: dict, d: int = 3) -> str:
    return f"{v['mean']:+.{d}f} [{v['lo']:+.{d}f}, {v['hi']:+.{d}f}]"


def _cell(res: dict, name: str, m: str) -> str:
    iv = res["intervals"][name][m]
    return f"{res['metrics'][name][m]:.3f} ± {(iv['hi'] - iv['lo']) / 2:.3f}"


def render_markdown(result: dict[str, Any]) -> str:
    m = result["meta"]
    first = m.get("train_seeds", [0])[0]
    rows = [r for r in result["rows"] if r.get("train_seed", 0) == first]
    lines = ["| target gap | measured gap (after correction) | full CIDEr | no_correction CIDEr | ΔCIDEr [95% CI] "
             "| full attr_f1 | no_correction attr_f1 | Δattr_f1 [95% CI] |", "|---" * 8 + "|"]
    for row in rows:
        d, gap = row["full_minus_no_correction"], row["gap"]
        lines.append(f"| {row['target']:.2f} | {gap['before']['centroid_gap']:.3f} "
                     f"({gap['after']['centroid_gap']:.3f}) | {_cell(row, 'full', 'CIDEr')} | "
                     f"{_cell(row, 'no_correction', 'CIDEr')} | {_fmt(d['CIDEr'])} | {_cell(row, 'full', 'attr_f1')} | "
                     f"{_cell(row, 'no_correction', 'attr_f1')} | {_fmt(d['attr_f1'])} |")
    if result.get("seed_mean"):
        seeds = result["seed_mean"][0]["train_seeds"]
        lines += ["", f"Training seeds {', '.join(map(str, seeds))}: Δ per seed, and the per-image values averaged "
                  "over the seeds (bootstrap over images):", "",
                  "| target gap | ΔCIDEr per seed | full CIDEr | no_correction CIDEr | ΔCIDEr [95% CI] "
                  "| Δattr_f1 per seed | Δattr_f1 [95% CI] |", "|---" * 7 + "|"]
        for sm in result["seed_mean"]:
            per = [r for r in result["rows"] if r["target"] == sm["target"]]
            dc = ", ".join(f"{r['full_minus_no_correction']['CIDEr']['mean']:+.3f}" for r in per)
            da = ", ".join(f"{r['full_minus_no_correction']['attr_f1']['mean']:+.3f}" for r in per)
            d = sm["full_minus_no_correction"]
            lines.append(f"| {sm['target']:.2f} | {dc} | {_cell(sm, 'full', 'CIDEr')} | "
                         f"{_cell(sm, 'no_correction', 'CIDEr')} | {_fmt(d['CIDEr'])} | {da} | {_fmt(d['attr_f1'])} |")
    lines += ["", "The CLIPs (probe on the test split: i→t / t→i recall@1, zero-shot colour / shape of one-object "
              "scenes, gap of test images vs their own captions):", "",
              "| target gap | s | ‖c‖ (mean feature norm {:.1f}) | max feature error of the saved CLIP | i→t R@1 | "
              "t→i R@1 | zero-shot colour | zero-shot shape | test-split gap | weights sha256 |".format(
                  m["base_check"]["feature_norm_mean"]), "|---" * 10 + "|"]
    for row in rows:
        err = f"{row['feature_max_abs_error']:.1e}" if row["shifted"] else "- (unmodified file)"
        pr = row.get("clip_probe") or {}
        probe = " | ".join(f"{pr[k]:.3f}" if k in pr else "-" for k in PROBE_KEYS)
        lines.append(f"| {row['target']:.2f} | {row['s']:.4f} | {row.get('shift_norm', 0.0):.2f} | {err} | {probe} | "
                     f"{row['weights_sha256'][:16]} |")
    if not m.get("complete", True):
        done = {(r["target"], r.get("train_seed", 0)) for r in result["rows"]}
        left = [f"{t:.2f} (seed {sd})" for sd in m.get("train_seeds", [0]) for t in m["targets_in_run_order"]
                if (t, sd) not in done]
        lines += ["", f"**Partial sweep**: {', '.join(left)} not measured (yet)."]
    lines += ["", f"Split `{SPLIT}` ({rows[0]['n_images']} images), config `{m['config']}` with only "
              f"`clip.pretrained` changed (first table: train.seed {first}){' (--quick sizes)' if m['quick'] else ''}"
              f"{'; ' + m['note'] if m.get('note') else ''}; "
              f"source weights `{m['weights']}` (sha256 {m['weights_sha256'][:16]}…). ± is half the 95% percentile "
              "bootstrap interval over images; Δ = full − no_correction on the same draws (paired). The gap is the "
              "centroid distance of L2-normalised unpaired-image and corpus-caption embeddings, as the gap stage "
              "measures it, before (and after) the correction."]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results JSON (the .md table is written beside it)")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/gap_sweep"), help="data dir + shifted CLIPs")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="the world CLIP to shift")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    ap.add_argument("--tol", type=float, default=0.02, help="accepted |measured gap - target|")
    ap.add_argument("--quick", action="store_true", help="tiny world and a few training steps (smoke run)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0],
                    help="train.seed values (0 is configs/demo.yaml's); with several, also seed-averaged rows")
    ap.add_argument("--note", default="", help="a line for the table's footer (kept in the JSON)")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md table from the --out JSON")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(args.out.read_text(encoding="utf-8"))
        if args.note:
            result["meta"]["note"] = args.note
            write_atomic(args.out, json.dumps(result, indent=2))
        write_atomic(args.out.with_suffix(".md"), render_markdown(result))
        return result
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(1)
    from tomcap.world.stage import run_world

    t_start = time.time()
    base = load_base(args.config, args.quick)
    root = args.work_dir.resolve() / ("quick" if args.quick else "full")
    # a private copy: the shipped file may be replaced while the sweep runs
    weights = root / "clips" / f"source-{sha256(args.weights)[:16]}.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    if not weights.is_file():
        shutil.copyfile(args.weights, weights.with_suffix(".tmp"))
        os.replace(weights.with_suffix(".tmp"), weights)
    world = run_world(base.world, str(root / "worlds"))
    unpaired = run_world(base.demo.unpaired_world, str(root / "worlds"))
    clips, check = make_clips(base, data_dir_for(root, weights), world, unpaired, weights, args.targets,
                              args.tol, root / "clips")
    rows, seeds = [], []
    meta = {"weights": str(args.weights), "weights_copy": str(weights), "weights_sha256": sha256(weights),
            "config": str(args.config), "quick": args.quick, "train_seeds": list(args.train_seeds), "split": SPLIT,
            "variants": list(VARIANTS), "tol": args.tol, "targets_in_run_order": args.targets,
            "shift_key": SHIFT_KEY, "base_check": check, "note": args.note}
    per_seed: dict[float, list] = {c["target"]: [] for c in clips}
    # seeds outer, CLIPs inner, results written after every run: a sweep stopped early keeps the whole first-seed
    # table and the later seeds of the CLIPs it reached
    for n_seed, seed in enumerate(args.train_seeds):
        for clip in clips:
            t0 = time.time()
            dd = data_dir_for(root, Path(clip["weights"]))
            res = run_clip(pipeline_config(base, Path(clip["weights"]), seed), dd, world, unpaired)
            per_seed[clip["target"]].append(res.pop("_per_image"))
            measured = res["gap"]["before"]["centroid_gap"]
            rows.append({**clip, **res, "train_seed": seed, "weights_sha256": sha256(Path(clip["weights"])),
                         "within_tol": abs(measured - clip["target"]) <= args.tol,
                         "seconds": round(time.time() - t0)})
            log.info("gap %.2f (measured %.4f), seed %d: done in %.0f s", clip["target"], measured, seed,
                     time.time() - t0)
            if n_seed > 0:
                seeds = [x for x in seeds if x["target"] != clip["target"]]
                seeds.append({"target": clip["target"], "train_seeds": list(args.train_seeds[:n_seed + 1]),
                              **seed_mean(base.demo.report, per_seed[clip["target"]])})
            complete = n_seed == len(args.train_seeds) - 1 and clip is clips[-1]
            write_result(args.out, meta, rows, seeds, t_start, complete=complete)
    return json.loads(args.out.read_text(encoding="utf-8"))


def write_result(out: Path, meta: dict, rows: list, seeds: list, t_start: float, complete: bool) -> None:
    def order(r: dict) -> tuple:
        return r["target"], r.get("train_seed", 0)

    result = {"meta": {**meta, "complete": complete, "seconds": round(time.time() - t_start),
                       "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
              "rows": sorted(rows, key=order), "seed_mean": sorted(seeds, key=order)}
    write_atomic(out, json.dumps(result, indent=2))
    md = render_markdown(result)
    write_atomic(out.with_suffix(".md"), md)
    print(md, flush=True)


if __name__ == "__main__":
    main()
