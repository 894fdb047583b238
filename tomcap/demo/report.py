"""The demo's report stage: per evaluation split, one table comparing variants and baselines, with
95% bootstrap intervals, paired comparisons, plus the modality gap before/after correction.

Writes ``report.md``, ``metrics.json`` and ``captions_grid.png`` (``tomcap.demo.grid``) as an artifact,
so a rerun of the demo with nothing changed is served from cache. Evaluations are keyed ``<split>/<row>``
(``test/full``, ``novel/nearest_caption``); a key without a split is the test split.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from ..config import StageConfig
from ..evaluate import bootstrap
from ..world.splits import TEST_STREAM
from ..world.stage import world_artifact_paths
from .attributes import attribute_scores
from .grid import GRID_FILE, GRID_ROWS, grid_markdown, grid_split, write_grid

SPEC = StageSpec(name="demo_report", version="3", modules=("tomcap.demo", "tomcap.evaluate.bootstrap"))
COLUMNS = ("Bleu_4", "METEOR", "CIDEr", "CLIPScore", "recall@1", "color_acc", "shape_acc", "attr_acc",
           "obj_precision", "obj_recall", "attr_f1", "count_acc")
SHOWN = ("Bleu_4", "METEOR", "CIDEr", "CLIPScore", "color_acc", "shape_acc", "obj_recall", "attr_f1", "count_acc")
"""Columns of the markdown table (metrics.json has all of COLUMNS)."""
WITH_INTERVALS = ("CIDEr", "color_acc", "shape_acc", "attr_acc", "obj_precision", "obj_recall", "attr_f1", "count_acc")
GAP_FIGURES = ("centroid_gap", "distribution_gap")
FULL, ORACLE, NEAREST = "full", "paired_oracle", "nearest_caption"
COMPARED = ("CIDEr", "attr_f1")
"""Metrics of the paired full-vs-other comparisons."""


class DemoReportConfig(StageConfig):
    title: str = Field(default="tomcap offline demo: text-only TOMCap vs ablations vs paired oracle")
    decimals: int = Field(default=3, ge=0, le=6)
    bootstrap_resamples: int = Field(default=1000, ge=100, description="bootstrap resamples over images")
    bootstrap_seed: int = Field(default=0, ge=0)
    bootstrap_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    grid_images: int = Field(default=8, ge=0, le=64, description="images in captions_grid.png: the first ones of "
                             "the split's annotation file, with the full and nearest captions and a reference; 0: none")


def split_of(key: str) -> tuple[str, str]:
    """'test/full' -> ('test', 'full'); 'full' -> ('test', 'full')."""
    return tuple(key.split("/", 1)) if "/" in key else (TEST_STREAM, key)  # type: ignore[return-value]


def upstream_fingerprints(config: DemoReportConfig, world: ArtifactRef, gap: ArtifactRef,
                          evaluations: dict[str, ArtifactRef], generations: dict[str, ArtifactRef]) -> dict[str, str]:
    up = {"world": world.fingerprint, "gap": gap.fingerprint}
    up.update({f"evaluate/{k}": v.fingerprint for k, v in evaluations.items()})
    up.update({f"generate/{k}": v.fingerprint for k, v in generations.items()})
    return up


def _per_image_metrics(evaluation: ArtifactRef) -> dict[str, dict[str, float]]:
    """metric -> {str(image id): value} from the evaluation's per_image.parquet."""
    import polars as pl

    df = pl.read_parquet(evaluation.file("per_image.parquet"))
    ids = [str(i) for i in df["image_id"].to_list()]
    return {c: dict(zip(ids, df[c].to_list())) for c in df.columns if c in WITH_INTERVALS}


def variant_metrics(world: ArtifactRef, evaluation: ArtifactRef, generation: ArtifactRef,
                    split: str = TEST_STREAM) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(metric -> value, metric -> {image id: value} for the bootstrap) of one row of one split."""
    metrics = json.loads(evaluation.file("metrics.json").read_text(encoding="utf-8"))
    results = json.loads(generation.file("results.json").read_text(encoding="utf-8"))
    ids, per = attribute_scores(results, world_artifact_paths(world).split(split).scenes)
    metrics.update({k: float(v.mean()) if len(v) else 0.0 for k, v in per.items()})
    per_image = _per_image_metrics(evaluation)
    per_image.update({k: dict(zip(map(str, ids), v.tolist())) for k, v in per.items() if k in WITH_INTERVALS})
    return {k: metrics[k] for k in COLUMNS if k in metrics}, per_image


def split_statistics(config: DemoReportConfig, per_image: dict[str, dict[str, dict[str, float]]]) -> dict:
    """Intervals per row and metric, and paired differences full - other, on the same image draws."""
    common = sorted(set.intersection(*(set(by_id) for row in per_image.values() for by_id in row.values())))
    args = dict(resamples=config.bootstrap_resamples, seed=config.bootstrap_seed, level=config.bootstrap_level)
    rows = {name: bootstrap.aligned(row, common) for name, row in per_image.items()}
    out: dict = {"n_images": len(common), "intervals": {n: bootstrap.intervals(r, **args) for n, r in rows.items()},
                 "full_minus": {}}
    if FULL in rows:
        for name, r in rows.items():
            if name != FULL:
                out["full_minus"][name] = {m: bootstrap.paired_difference(rows[FULL][m], r[m], **args)
                                           for m in COMPARED if m in r and m in rows[FULL]}
    return out


def _cell(row: dict, iv: dict, col: str, d: int) -> str:
    if col not in row:
        return "-"
    if col in iv:
        return f"{row[col]:.{d}f} ± {(iv[col]['hi'] - iv[col]['lo']) / 2:.{d}f}"
    return f"{row[col]:.{d}f}"


def _grid(config: DemoReportConfig, world: ArtifactRef, generations: dict[str, ArtifactRef], out: Path) -> dict | None:
    """Draw the caption grid of one split into ``out``; what it shows, or None when no split has its rows."""
    rows: dict[str, set[str]] = {}
    for key in generations:
        split, name = split_of(key)
        rows.setdefault(split, set()).add(name)
    split = grid_split(rows)
    if split is None or config.grid_images == 0:
        return None
    results = {name: json.loads(generations[f"{split}/{name}"].file("results.json").read_text(encoding="utf-8"))
               for name in GRID_ROWS}
    return write_grid(world_artifact_paths(world).split(split), split, results, config.grid_images, out)


def render_markdown(config: DemoReportConfig, tables: dict[str, dict[str, dict[str, float]]], stats: dict,
                    gap: dict, grid: dict | None = None) -> str:
    d = config.decimals
    level = round(config.bootstrap_level * 100)
    lines = [f"# {config.title}", "",
             f"± is half the width of the {level}% percentile bootstrap interval over images "
             f"({config.bootstrap_resamples} seeded resamples; exact bounds in metrics.json).", ""]
    for split, table in tables.items():
        cols = [c for c in SHOWN if any(c in row for row in table.values())]
        st = stats.get(split, {})
        lines += [f"## Split `{split}` ({st.get('n_images', '?')} images)", "",
                  "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, row in table.items():
            iv = st.get("intervals", {}).get(name, {})
            lines.append(f"| {name} | " + " | ".join(_cell(row, iv, c, d) for c in cols) + " |")
        diffs = st.get("full_minus", {})
        if diffs:
            lines += ["", f"Paired differences full − row ({level}% interval; 'yes' where it excludes 0):", "",
                      "| row | " + " | ".join(f"Δ{m}" for m in COMPARED) + " |", "|---" * (len(COMPARED) + 1) + "|"]
            for name, by_m in diffs.items():
                cells = [f"{v['mean']:+.{d}f} [{v['lo']:+.{d}f}, {v['hi']:+.{d}f}] "
                         f"{'yes' if v['lo'] > 0 or v['hi'] < 0 else 'no'}" if (v := by_m.get(m)) else "-"
                         for m in COMPARED]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if FULL in table and ORACLE in table and table[ORACLE].get("CIDEr"):
            lines += ["", f"text-only / paired-oracle CIDEr: {table[FULL]['CIDEr'] / table[ORACLE]['CIDEr']:.{d}f}"]
        lines.append("")
    lines += ["## Modality gap of the CLIP model (image vs text embeddings)", "",
              "| | " + " | ".join(GAP_FIGURES) + " |", "|---" * (len(GAP_FIGURES) + 1) + "|"]
    for when in ("before", "after"):
        fig = gap.get(when, {})
        lines.append(f"| {when} correction | " + " | ".join(
            f"{fig[g]:.{d}f}" if g in fig else "-" for g in GAP_FIGURES) + " |")
    if grid is not None:
        lines += [""] + grid_markdown(grid)
    return "\n".join(lines) + "\n"


def run_demo_report(config: DemoReportConfig, data_dir: Path | str, *, world: ArtifactRef, gap: ArtifactRef,
                    evaluations: dict[str, ArtifactRef], generations: dict[str, ArtifactRef],
                    force: bool = False) -> ArtifactRef:
    """Collect every row's metrics per split into report.md and metrics.json (with bootstrap intervals)."""
    upstream = upstream_fingerprints(config, world, gap, evaluations, generations)

    def build(tmp: Path) -> BuildOutput:
        tables: dict[str, dict[str, dict[str, float]]] = {}
        per_image: dict[str, dict[str, dict]] = {}
        for key in evaluations:
            split, name = split_of(key)
            row, per = variant_metrics(world, evaluations[key], generations[key], split)
            tables.setdefault(split, {})[name] = row
            per_image.setdefault(split, {})[name] = per
        stats = {split: split_statistics(config, rows) for split, rows in per_image.items()}
        info = gap.manifest().info
        gap_figs = {w: info.get(w, {}) for w in ("before", "after")}
        first = tables.get(TEST_STREAM) or next(iter(tables.values()), {})
        primary = {k: v for k, v in first.items() if k != NEAREST}
        out = {"variants": primary, "baselines": {k: v for k, v in first.items() if k == NEAREST},
               "splits": {s: {"variants": t, **stats[s]} for s, t in tables.items()},
               "bootstrap": {"resamples": config.bootstrap_resamples, "seed": config.bootstrap_seed,
                             "level": config.bootstrap_level}, "gap": gap_figs}
        grid = _grid(config, world, generations, tmp / GRID_FILE)
        if grid is not None:
            out["grid"] = grid
        (tmp / "metrics.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(config, tables, stats, gap_figs, grid), encoding="utf-8")
        return BuildOutput(rows={"variants": len(primary), "splits": len(tables)},
                           info={"variants": primary, "splits": list(tables), "gap": gap_figs, "grid": grid})

    return ArtifactStore(data_dir).build(SPEC, config, upstream, build, force=force)


__all__ = ["DemoReportConfig", "run_demo_report", "split_statistics", "variant_metrics"]
