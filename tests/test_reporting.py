"""UI artifacts: figures inlined as PNG data URIs (bounded in size), thumbnails beside sample captions,
numbers rounded for reading; one artifact published to a Prefect test server and read back."""
from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tasks import reporting
from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec
from tomcap.config import StageConfig
from tomcap.embed.store import IDS_FILE, write_shards
from tomcap.gap import GapConfig, run_gap
from tomcap.report_md import MAX_IMAGE_BYTES, MAX_IMAGE_PX, for_reading, md_table, png_data_uri

DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


class _Cfg(StageConfig):
    tag: str = "a"
    images: str | None = None
    annotations: str | None = None


def _decoded_pngs(markdown: str) -> list[Image.Image]:
    out = []
    for b64 in DATA_URI.findall(markdown):
        raw = base64.b64decode(b64, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        img = Image.open(io.BytesIO(raw))
        img.load()
        assert img.format == "PNG"
        out.append(img)
    return out


def _artifact(data, stage, build, upstream=None, **cfg):
    return ArtifactStore(data).build(StageSpec(stage, "test"), _Cfg(**cfg), upstream or {}, build)


def _embedding(data, stage, arr, ids, tag="a"):
    def build(tmp):
        shards = write_shards(arr, tmp, "float32", 1000)
        col = {"embed": "caption_id", "embed_images": "image_id"}[stage]
        frame = {col: ids} | ({"image_id": [None] * len(ids)} if stage == "embed" else {})
        pl.DataFrame(frame, schema={k: pl.String for k in frame}).write_parquet(tmp / IDS_FILE[stage])
        return BuildOutput(rows={"rows": len(ids)}, info={"dim": arr.shape[1], "model_fingerprint": "M@w",
                                                          "dtype": "float32", "shards": shards})
    return _artifact(data, stage, build, tag=tag)


@pytest.fixture
def gap_ref(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    text = _embedding(data, "embed", rng.normal(0, 1, (300, 8)).astype(np.float32), [f"c{i}" for i in range(300)])
    images = _embedding(data, "embed_images", rng.normal(1, 1, (200, 8)).astype(np.float32),
                        [f"u{i}" for i in range(200)])
    return run_gap(GapConfig(), data, text=text, images=images)


def test_gap_report_inlines_its_histograms(gap_ref):
    md = reporting.gap_report_markdown(gap_ref)
    assert "per_dim_means_stds.png)" not in md  # no file link left (404 in the UI)
    [img] = _decoded_pngs(md)
    assert img.width > 100 and img.height > 50 and "centroid gap" in md


def test_large_images_are_downscaled_and_bounded(tmp_path):
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 255, (1600, 2400, 3), dtype=np.uint8))  # incompressible
    noisy.save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size > 4 * MAX_IMAGE_BYTES
    uri = png_data_uri(tmp_path / "big.png")
    [img] = _decoded_pngs(uri)
    assert max(img.size) <= MAX_IMAGE_PX and img.size[0] / img.size[1] == pytest.approx(1.5, rel=0.02)
    assert len(base64.b64decode(uri.split(",", 1)[1])) <= MAX_IMAGE_BYTES
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 30), "red").save(small)
    assert base64.b64decode(png_data_uri(small).split(",", 1)[1]) == small.read_bytes()  # small PNG kept as is


def test_training_curve_is_a_plot_and_rounded(tmp_path):
    def build(tmp):
        (tmp / "adaptor.safetensors").write_bytes(b"x")
        return BuildOutput(info={"val_losses": [[0, 5.123456789], [50, 3.987654321], [100, 3.0000001]],
                                 "train_loss_last": 2.718281828})
    ref = _artifact(tmp_path / "data", "train", build)
    md = reporting.training_curve_markdown(ref)
    [plot] = _decoded_pngs(md)
    assert plot.width >= 300
    assert "| 50 | 3.988 |" in md and "3.987654321" not in md and "2.718 |" in md


def test_samples_show_thumbnails_beside_captions(tmp_path):
    data, folder = tmp_path / "data", tmp_path / "imgs"
    folder.mkdir()
    for i, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (320, 240), colour).save(folder / f"{i:012d}.png")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "000000000000.png"},
                                          {"id": 9, "file_name": "000000000001.png"}]}))

    def images_build(tmp):
        pl.DataFrame({"image_id": ["0", "1"], "file": ["000000000000.png", "000000000001.png"]}).write_parquet(
            tmp / IDS_FILE["embed_images"])
        return BuildOutput()
    images = _artifact(data, "embed_images", images_build, images=str(folder))

    def gen_build(tmp):
        (tmp / "results.json").write_text(json.dumps([{"image_id": 7, "caption": "a red square"},
                                                      {"image_id": 9, "caption": "a blue | square"}]))
        (tmp / "retrieved.json").write_text(json.dumps([{"image_id": 7, "retrieved": ["red", "a red one", "third"]},
                                                        {"image_id": 9, "retrieved": ["blue"]}]))
        return BuildOutput()
    gen = _artifact(data, "generate", gen_build, upstream={"images": images.fingerprint}, annotations=str(ann))
    md = reporting.samples_markdown(gen)
    thumbs = _decoded_pngs(md)
    assert len(thumbs) == 2 and all(max(t.size) <= reporting.THUMBNAIL_PX for t in thumbs)
    assert thumbs[0].getpixel((0, 0))[:3] == (255, 0, 0) and thumbs[1].getpixel((0, 0))[:3] == (0, 0, 255)
    lines = [ln for ln in md.splitlines() if ln.startswith("| ![")]
    assert "a red square" in lines[0] and "red · a red one |" in lines[0] and "a blue \\| square" in lines[1]
    assert reporting._clip("x" * 100).endswith("…") and len(reporting._clip("x" * 100)) == reporting.RETRIEVED_CHARS


def test_samples_without_image_artifact_still_list_captions(tmp_path):
    def gen_build(tmp):
        (tmp / "results.json").write_text(json.dumps([{"image_id": 1, "caption": "a cat"}]))
        (tmp / "retrieved.json").write_text(json.dumps([{"image_id": 1, "retrieved": []}]))
        return BuildOutput()
    md = reporting.samples_markdown(_artifact(tmp_path / "data", "generate", gen_build, upstream={"images": "nope"}))
    assert "| - | 1 | a cat | - |" in md and "data:image" not in md


def test_metrics_rounded_for_reading(tmp_path):
    def build(tmp):
        (tmp / "metrics.json").write_text(json.dumps({"CIDEr": 0.123456789012345, "Bleu_4": 0.0312345678,
                                                      "images": 5000, "SPICE": None}))
        return BuildOutput()
    [row] = reporting.metrics_table(_artifact(tmp_path / "data", "evaluate", build))
    assert row == {"results": "results", "CIDEr": 0.1235, "Bleu_4": 0.03123, "images": 5000}
    assert json.loads((_artifact(tmp_path / "data", "evaluate", build).dir / "metrics.json").read_text())[
        "CIDEr"] == 0.123456789012345  # full precision stays in the file


def test_for_reading_and_md_table():
    assert [for_reading(v) for v in (123.456789, 0.000123456, 7, True, float("nan"), 0.0, "x")][:3] == [
        123.5, 0.0001235, 7]
    assert for_reading(True) is True and for_reading(float("nan")) != for_reading(float("nan"))
    assert md_table([{"a": 1.23456, "b": None}]) == "| a | b |\n|---|---|\n| 1.235 | - |"


def test_sweep_markdown_inlines_pareto(tmp_path):
    from tomcap.generate.sweep import plot_pareto

    def build(tmp):
        plot_pareto([0, 1, 2], [0.5, 0.61234567, 0.55], [0.2, 0.25, 0.3], "CIDEr", "CLIPScore", tmp / "pareto.png")
        return BuildOutput(info={"table": [{"scale": 1.0, "CIDEr": 0.61234567, "CLIPScore": 0.25}]})
    md = reporting.sweep_markdown(_artifact(tmp_path / "data", "guidance_sweep", build))
    assert len(_decoded_pngs(md)) == 1 and "0.6123" in md and "0.61234567" not in md


@pytest.mark.prefect
def test_published_gap_report_carries_the_image(gap_ref, prefect_harness):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow
    def publish():
        reporting.publish_gap_report(gap_ref)

    publish()
    with get_client(sync_client=True) as client:
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["tomcap-gap-report"])),
                                      limit=1)
    assert art.type == "markdown" and len(_decoded_pngs(art.data)) == 1
