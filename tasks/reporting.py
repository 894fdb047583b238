"""Prefect UI artifacts built from stage manifests (presentation only; no computation).

Each ``*_markdown``/``*_table`` function builds what the UI shows from an artifact folder alone (tested
without Prefect); ``publish_*`` sends it. Figures are inlined as PNG data URIs (the UI cannot load files
beside the artifact) and numbers are rounded for reading; full precision stays in the artifact's files.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tomcap.artifacts import ArtifactError, ArtifactRef, ArtifactStore
from tomcap.embed.store import ID_COLUMN, IDS_FILE
from tomcap.generate.sweep import PLOT_FILE as PARETO_PNG
from tomcap.report_md import THUMBNAIL_PX, curve_png, image_md, inline_images, md_table, png_data_uri, rounded_rows

log = logging.getLogger(__name__)

SAMPLE_CAPTIONS = 10
SAMPLE_RETRIEVED = 2
RETRIEVED_CHARS = 60
"""Retrieved captions are cut to this many characters so the table fits the UI (all of them: retrieved.json)."""
PROGRESS_EVERY_STEPS = 10
IMAGES_STAGE = "embed_images"


def _describe(ref: ArtifactRef) -> str:
    return f"{ref.stage} artifact {ref.path} ({'cached' if ref.cached else 'built'})"


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _pngs(ref: ArtifactRef) -> list[str]:
    return sorted(f for f in ref.manifest().files if f.lower().endswith(".png"))


def _with_figures(markdown: str, ref: ArtifactRef) -> str:
    """``markdown`` with its links to the artifact's PNGs inlined, and every PNG it did not show appended."""
    files = _pngs(ref)
    out = inline_images(markdown, ref.dir, files)
    rest = [f for f in files if f"]({f})" not in markdown]
    if rest:
        out += "\n\n**Figures**\n\n" + "\n\n".join(image_md(Path(f).stem.replace("_", " "), ref.dir / f) for f in rest)
    return out + "\n"


def corpus_stats_table(ref: ArtifactRef) -> list[dict[str, Any]]:
    per_source = ref.manifest().rows.get("per_source", {})
    return [{"source": name, **counts} for name, counts in per_source.items()]


def publish_corpus_stats(ref: ArtifactRef) -> None:
    """Rows in/out and drop reasons per source, as the 'tomcap-corpus-stats' table."""
    create_table_artifact(key="tomcap-corpus-stats", table=corpus_stats_table(ref), description=_describe(ref))


def gap_report_markdown(ref: ArtifactRef) -> str:
    """The gap stage's report.md with its histograms inlined."""
    return _with_figures(ref.file("report.md").read_text(encoding="utf-8"), ref)


def publish_gap_report(ref: ArtifactRef) -> None:
    create_markdown_artifact(key="tomcap-gap-report", markdown=gap_report_markdown(ref), description=_describe(ref))


def index_info_table(ref: ArtifactRef) -> list[dict[str, Any]]:
    m = ref.manifest()
    return rounded_rows([_scalars({**m.rows, **m.info})])


def publish_index_info(ref: ArtifactRef) -> None:
    create_table_artifact(key="tomcap-index-info", table=index_info_table(ref), description=_describe(ref))


class TrainingProgress:
    """Training progress callback: a Prefect progress artifact (0-100) and a run-log line with the loss
    and the ETA, every few steps."""

    def __init__(self, steps: int):
        self.steps = steps
        self.artifact_id = None
        self._start: tuple[float, int] | None = None

    def _log(self, step: int, event: dict[str, Any]) -> None:
        import time

        from prefect import get_run_logger

        now = time.monotonic()
        if self._start is None:
            self._start = (now, step)
        t0, s0 = self._start
        eta = (now - t0) / (step - s0) * (self.steps - step) if step > s0 else None
        val = f", val loss {event['val_loss']:.4f}" if "val_loss" in event else ""
        get_run_logger().info("train step %d/%d: loss %.4f%s, ETA %s", step, self.steps, float(event.get("loss", 0)),
                              val, "unknown" if eta is None else f"{eta:.0f} s")

    def __call__(self, event: dict[str, Any]) -> None:
        step = int(event.get("step", 0))
        if step % PROGRESS_EVERY_STEPS and step != self.steps:
            return
        self._log(step, event)
        pct = 100.0 * step / max(self.steps, 1)
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(progress=pct, key="tomcap-train-progress",
                                                        description="adaptor training")
        else:
            update_progress_artifact(self.artifact_id, progress=pct)


def training_curve_markdown(ref: ArtifactRef) -> str:
    """Validation loss per evaluation step as a plot, the numbers below it, and the artifact's own PNGs."""
    info = ref.manifest().info
    points = [(int(s), float(v)) for s, v in info.get("val_losses", [])]
    lines = ["# Training curve", ""]
    if points:
        png = curve_png(points, title="validation loss", x_label="step", y_label="loss")
        table = md_table([{"step": s, "val_loss": v} for s, v in points])
        lines += [image_md("validation loss per step", png), "", table]
    else:
        lines.append("No validation losses recorded (no validation split or no evaluation step).")
    last = {k: info[k] for k in ("train_loss_last",) if info.get(k) is not None}
    if last:
        lines += ["", md_table([last])]
    return _with_figures("\n".join(lines), ref)


def publish_training_curve(ref: ArtifactRef) -> None:
    """The validation-loss curve of a train artifact, as the 'tomcap-training-curve' markdown artifact."""
    create_markdown_artifact(key="tomcap-training-curve", markdown=training_curve_markdown(ref),
                             description=_describe(ref))


def _image_files(ref: ArtifactRef) -> dict[Any, Path]:
    """Image id -> file of the images a generation artifact captioned (read from the image-embedding manifest
    its manifest names); empty when that artifact is not in the same data dir."""
    m = ref.manifest()
    store = ArtifactStore(Path(ref.path).parents[2])
    match = [e for e in store.list(IMAGES_STAGE) if e.fingerprint == m.upstream.get("images")]
    if not match or not match[0].config.get("images"):
        return {}
    import polars as pl

    folder = store.path_for(IMAGES_STAGE, match[0].key)
    ids = pl.read_parquet(folder / IDS_FILE[IMAGES_STAGE])
    root = Path(match[0].config["images"])
    files = [root / f for f in ids["file"].to_list()]
    annotations = m.config.get("annotations")
    if not annotations:
        return dict(zip(ids[ID_COLUMN[IMAGES_STAGE]].to_list(), files))
    by_name = {f.name: f for f in files}
    images = json.loads(Path(annotations).read_text(encoding="utf-8")).get("images", [])
    return {im["id"]: by_name[Path(im["file_name"]).name] for im in images if Path(im["file_name"]).name in by_name}


def _clip(text: str, chars: int = RETRIEVED_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def samples_markdown(ref: ArtifactRef) -> str:
    """A few generated captions, each with its image thumbnail and the retrieved captions it was prompted with."""
    rows = json.loads(ref.file("retrieved.json").read_text(encoding="utf-8"))[:SAMPLE_CAPTIONS]
    caps = {r["image_id"]: r["caption"] for r in json.loads(ref.file("results.json").read_text(encoding="utf-8"))}
    try:
        files = _image_files(ref)
    except (ArtifactError, OSError, ValueError, KeyError) as err:  # the captions still show; say why no thumbnails
        log.warning("sample captions without thumbnails: %s", err)
        files = {}

    def thumb(image_id: Any) -> str:
        f = files.get(image_id)
        if f is None or not f.is_file():
            return "-"
        return f"![image {image_id}]({png_data_uri(f, max_px=THUMBNAIL_PX)})"

    table = [{"image": thumb(r["image_id"]), "image id": r["image_id"], "caption": caps.get(r["image_id"], ""),
              "retrieved": " · ".join(_clip(c) for c in r["retrieved"][:SAMPLE_RETRIEVED]) or "-"} for r in rows]
    return f"# Sample captions ({len(rows)} of {len(caps)})\n\n" + md_table(table) + "\n"


def publish_samples(ref: ArtifactRef) -> None:
    create_markdown_artifact(key="tomcap-sample-captions", markdown=samples_markdown(ref), description=_describe(ref))


def metrics_table(ref: ArtifactRef) -> list[dict[str, Any]]:
    """Scalar metrics of an evaluation artifact (one row per results file of a sweep), rounded for reading."""
    files = ref.manifest().files
    if "metrics.json" in files:
        runs = {"results": json.loads(ref.file("metrics.json").read_text())}
    else:  # a sweep: one entry per results file
        runs = {v["name"]: v["metrics"] for v in json.loads(ref.file("sweep.json").read_text()).values()}
    return rounded_rows([{"results": name, **{k: v for k, v in m.items()
                                             if isinstance(v, (int, float)) and not isinstance(v, bool)}}
                         for name, m in runs.items()])


def publish_metrics(ref: ArtifactRef) -> None:
    """The 'tomcap-eval-metrics' table (full precision stays in the artifact's metrics.json)."""
    create_table_artifact(key="tomcap-eval-metrics", table=metrics_table(ref), description=_describe(ref))


def demo_report_markdown(ref: ArtifactRef) -> str:
    """The demo's report.md with every PNG of its artifact (e.g. a caption grid) inlined."""
    return _with_figures(ref.file("report.md").read_text(encoding="utf-8"), ref)


def publish_demo_report(ref: ArtifactRef) -> None:
    """The demo's comparison table as the 'tomcap-demo-report' markdown artifact."""
    create_markdown_artifact(key="tomcap-demo-report", markdown=demo_report_markdown(ref), description=_describe(ref))


def sweep_markdown(ref: ArtifactRef) -> str:
    """The guidance sweep's table and its Pareto plot."""
    m = ref.manifest()
    plot = f"\n\n![Pareto plot]({PARETO_PNG})" if PARETO_PNG in m.files else ""
    return _with_figures(f"# Classifier-free guidance sweep\n\n{md_table(m.info['table'])}{plot}", ref)


def publish_sweep(ref: ArtifactRef) -> None:
    create_markdown_artifact(key="tomcap-guidance-sweep", markdown=sweep_markdown(ref), description=_describe(ref))
