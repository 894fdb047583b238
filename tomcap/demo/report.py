"""The demo's report stage: one table comparing variants, plus the modality gap before/after correction.

Writes ``report.md`` and ``metrics.json`` (variant -> metrics, and the gap figures) as an artifact,
so a rerun of the demo with nothing changed is served from cache.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from ..config import StageConfig
from ..world.stage import world_artifact_paths
from .attributes import attribute_accuracy

SPEC = StageSpec(name="demo_report", version="1", modules=("tomcap.demo",))
COLUMNS = ("Bleu_4", "METEOR", "CIDEr", "CLIPScore", "recall@1", "color_acc", "shape_acc", "attr_acc")
GAP_FIGURES = ("centroid_gap", "distribution_gap")


class DemoReportConfig(StageConfig):
    title: str = Field(default="tomcap offline demo: text-only TOMCap vs ablations vs paired oracle")
    decimals: int = Field(default=3, ge=0, le=6)


def upstream_fingerprints(config: DemoReportConfig, world: ArtifactRef, gap: ArtifactRef,
                          evaluations: dict[str, ArtifactRef], generations: dict[str, ArtifactRef]) -> dict[str, str]:
    up = {"world": world.fingerprint, "gap": gap.fingerprint}
    up.update({f"evaluate/{k}": v.fingerprint for k, v in evaluations.items()})
    up.update({f"generate/{k}": v.fingerprint for k, v in generations.items()})
    return up


def variant_metrics(world: ArtifactRef, evaluation: ArtifactRef, generation: ArtifactRef) -> dict[str, float]:
    metrics = json.loads(evaluation.file("metrics.json").read_text(encoding="utf-8"))
    results = json.loads(generation.file("results.json").read_text(encoding="utf-8"))
    metrics.update(attribute_accuracy(results, world_artifact_paths(world).test_scenes))
    return {k: metrics[k] for k in COLUMNS if k in metrics}


def render_markdown(config: DemoReportConfig, table: dict[str, dict[str, float]], gap: dict) -> str:
    d = config.decimals
    cols = [c for c in COLUMNS if any(c in row for row in table.values())]
    lines = [f"# {config.title}", "", "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.{d}f}" if c in row else "-" for c in cols) + " |")
    lines += ["", "## Modality gap of the CLIP model (image vs text embeddings)", "",
              "| | " + " | ".join(GAP_FIGURES) + " |", "|---" * (len(GAP_FIGURES) + 1) + "|"]
    for when in ("before", "after"):
        fig = gap.get(when, {})
        lines.append(f"| {when} correction | " + " | ".join(
            f"{fig[g]:.{d}f}" if g in fig else "-" for g in GAP_FIGURES) + " |")
    return "\n".join(lines) + "\n"


def run_demo_report(config: DemoReportConfig, data_dir: Path | str, *, world: ArtifactRef, gap: ArtifactRef,
                    evaluations: dict[str, ArtifactRef], generations: dict[str, ArtifactRef],
                    force: bool = False) -> ArtifactRef:
    """Collect every variant's metrics into report.md and metrics.json."""
    upstream = upstream_fingerprints(config, world, gap, evaluations, generations)

    def build(tmp: Path) -> BuildOutput:
        table = {name: variant_metrics(world, evaluations[name], generations[name]) for name in evaluations}
        info = gap.manifest().info
        gap_figs = {w: info.get(w, {}) for w in ("before", "after")}
        (tmp / "metrics.json").write_text(json.dumps({"variants": table, "gap": gap_figs}, indent=2), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(config, table, gap_figs), encoding="utf-8")
        return BuildOutput(rows={"variants": len(table)}, info={"variants": table, "gap": gap_figs})

    return ArtifactStore(data_dir).build(SPEC, config, upstream, build, force=force)
