"""The demo report's caption grid: a PNG of the first test images with their captions, linked from report.md,
byte-identical when rebuilt, and left out when no split has both the full and the nearest_caption rows."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec
from tomcap.config import StageConfig
from tomcap.demo.grid import CELL_PX, COLUMNS, GRID_FILE, PAD
from tomcap.demo.report import DemoReportConfig, run_demo_report
from tomcap.world import WorldConfig
from tomcap.world.stage import run_world, world_artifact_paths


class _Fake(StageConfig):
    name: str


def _artifact(data: Path, stage: str, name: str, files: dict[str, str | bytes], info: dict | None = None):
    """A hand-made artifact of ``stage`` (files written through the store, so it is checked like a real one)."""

    def build(tmp: Path) -> BuildOutput:
        for fname, content in files.items():
            (tmp / fname).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return BuildOutput(info=info or {})

    return ArtifactStore(data).build(StageSpec(name=stage, version="test"), _Fake(name=name), {}, build)


def _rows(data: Path, world, split: str, name: str, ref_index: int):
    """(evaluation, generation) of a fake row whose captions are each image's ``ref_index``-th reference."""
    coco = json.loads(world_artifact_paths(world).split(split).annotations.read_text(encoding="utf-8"))
    refs: dict[int, list[str]] = {}
    for a in coco["annotations"]:
        refs.setdefault(a["image_id"], []).append(a["caption"])
    results = [{"image_id": i, "caption": caps[ref_index]} for i, caps in refs.items()]
    ids = [r["image_id"] for r in results]
    per_image = Path(data) / f"per_image_{split}_{name}.parquet"
    pl.DataFrame({"image_id": ids, "CIDEr": [1.0 + 0.01 * i for i in ids]}).write_parquet(per_image)
    ev = _artifact(data, "evaluate", f"{split}/{name}", {
        "metrics.json": json.dumps({"Bleu_4": 0.5, "METEOR": 0.3, "CIDEr": 1.0}),
        "per_image.parquet": per_image.read_bytes()})
    gen = _artifact(data, "generate", f"{split}/{name}", {"results.json": json.dumps(results)})
    return ev, gen


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    data = tmp_path_factory.mktemp("grid") / "data"
    world = run_world(WorldConfig(seed=3, n_train_scenes=30, n_test_images=10, n_val_images=6), data)
    gap = _artifact(data, "gap", "gap", {"gap.json": "{}"},
                    info={"before": {"centroid_gap": 0.8}, "after": {"centroid_gap": 0.1}})
    return data, world, gap


ROWS = (("full", 1), ("nearest_caption", 2))


def _report(small_world, splits: tuple[str, ...], config: DemoReportConfig = DemoReportConfig(), force=False,
            rows=ROWS):
    data, world, gap = small_world
    evaluations, generations = {}, {}
    for split in splits:
        for name, ref_index in rows:
            ev, gen = _rows(data, world, split, name, ref_index)
            evaluations[f"{split}/{name}"], generations[f"{split}/{name}"] = ev, gen
    return run_demo_report(config, data, world=world, gap=gap, evaluations=evaluations, generations=generations,
                           force=force)


def test_grid_png_is_linked_and_stable(small_world):
    _, world, _ = small_world
    ref = _report(small_world, ("test", "val"))
    png = ref.file(GRID_FILE)
    with Image.open(png) as im:
        width, height = im.size
        assert im.mode == "RGB" and not im.info.get("tIME")
    assert width == PAD + COLUMNS * (CELL_PX + PAD)
    assert height > 2 * CELL_PX  # two rows of four images, captions under each
    report = ref.file("report.md").read_text(encoding="utf-8")
    assert f"![caption grid]({GRID_FILE})" in report
    coco = json.loads(world_artifact_paths(world).split("test").annotations.read_text(encoding="utf-8"))
    first8 = [im["id"] for im in coco["images"][:8]]
    grid = json.loads(ref.file("metrics.json").read_text(encoding="utf-8"))["grid"]
    assert grid["split"] == "test" and grid["image_ids"] == first8 and grid["size"] == [width, height]
    assert f"ids {', '.join(map(str, first8))}" in report
    # The first image sits in the top-left cell, each pixel a 3x3 block (nearest-neighbour upscaling).
    first = world_artifact_paths(world).split("test").images_dir / coco["images"][0]["file_name"]
    with Image.open(first) as src, Image.open(png) as im:
        small = src.convert("RGB")
        big = small.resize((CELL_PX, CELL_PX), Image.Resampling.NEAREST)
        top_row = big.crop((0, 0, CELL_PX, 1)).tobytes()
        cell_top = next(y for y in range(im.size[1]) if im.crop((PAD, y, PAD + CELL_PX, y + 1)).tobytes() == top_row)
        assert im.crop((PAD, cell_top, PAD + CELL_PX, cell_top + CELL_PX)).tobytes() == big.tobytes()
    rebuilt = _report(small_world, ("test", "val"), force=True)
    assert rebuilt.file(GRID_FILE).read_bytes() == png.read_bytes()


def test_grid_uses_the_split_that_exists_or_none(small_world):
    ref = _report(small_world, ("val",), DemoReportConfig(grid_images=3))
    grid = json.loads(ref.file("metrics.json").read_text(encoding="utf-8"))["grid"]
    assert grid["split"] == "val" and len(grid["image_ids"]) == 3
    with Image.open(ref.file(GRID_FILE)) as im:
        assert im.size[0] == PAD + 3 * (CELL_PX + PAD)
    for off in (_report(small_world, ("test",), DemoReportConfig(grid_images=0)),
                _report(small_world, ("test", "val"), rows=ROWS[:1])):  # no nearest_caption row (baselines: [])
        assert GRID_FILE not in off.manifest().files
        assert "caption grid" not in off.file("report.md").read_text(encoding="utf-8")
        assert "grid" not in json.loads(off.file("metrics.json").read_text(encoding="utf-8"))
