"""The one stage declaration (tomcap/pipeline.py): what runs for which config, what is refused up front,
what the demo variants share, and that the library and light commands stay free of Prefect and torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tomcap.errors import ConfigError
from tomcap.pipeline import STAGES, plan, reusable, run_until
from tomcap.settings import PipelineConfig

REPO = Path(__file__).resolve().parents[1]


def _cfg(**sections) -> PipelineConfig:
    base = {"embed_images": {"images": "/unpaired"}, "test_images": {"images": "/test"},
            "paired_images": {"images": "/train"}}
    base.update(sections)
    return PipelineConfig.model_validate(base)


def _names(cfg: PipelineConfig, target: str, given=()) -> list[str]:
    return [s.name for s in plan(cfg, target, given)]


def test_declaration_order_puts_every_stage_after_its_inputs():
    seen: set[str] = set()
    for st in STAGES:
        assert {i.stage for i in st.inputs} <= seen, st.name
        seen.add(st.name)


def test_gap_and_index_run_only_when_training_uses_them():
    assert _names(_cfg(), "train") == ["corpus", "embed", "embed_images", "gap", "index", "train"]
    no_ret = _cfg(train={"retrieval_prompt": False, "retrieval_cross": False})
    assert "index" not in _names(no_ret, "train")
    assert "index" in _names(no_ret, "evaluate")  # generation still reads the datastore
    no_gap = _cfg(train={"gap_correction": False, "noise": False})
    assert "gap" not in _names(no_gap, "train") and "embed_images" not in _names(no_gap, "train")
    # Noise alone uses the measured noise scale when unpaired images are configured, the fixed one otherwise.
    noise_only = {"gap_correction": False}
    assert "gap" in _names(_cfg(train=noise_only), "train")
    assert "gap" not in _names(_cfg(train=noise_only, embed_images={"images": None}), "train")
    assert "paired_images" in _names(_cfg(train={"query": "image"}), "train")
    assert "paired_images" not in _names(_cfg(), "evaluate")


def test_the_nearest_caption_baseline_needs_only_the_datastore_and_the_images():
    assert _names(_cfg(), "evaluate_nearest") == ["corpus", "embed", "index", "test_images", "nearest_caption",
                                                  "evaluate_nearest"]


def test_given_artifacts_cut_the_graph():
    assert _names(_cfg(), "evaluate", {"train": object(), "index": object()}) == ["test_images", "generate",
                                                                                  "evaluate"]


def test_missing_field_is_refused_before_anything_runs_naming_field_and_way_out(tmp_path):
    cfg = PipelineConfig.model_validate({})  # no image folders at all
    with pytest.raises(ConfigError) as err:
        run_until(cfg, tmp_path, "train")
    msg = str(err.value)
    assert "embed_images.images" in msg and "--gap DIR" in msg and "train.gap_correction: false" in msg
    assert not (tmp_path / "artifacts").exists()  # refused before the corpus stage ran


def test_unknown_clip_model_is_refused_before_the_corpus_is_built(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"caption": "a red circle in the middle"}\n')
    cfg = PipelineConfig.model_validate({"corpus": {"sources": [{"path": str(src)}]},
                                         "clip": {"model": "no-such-clip"}})
    with pytest.raises(ConfigError, match="no-such-clip"):
        run_until(cfg, tmp_path, "embed")
    assert not (tmp_path / "artifacts" / "corpus").exists()


def test_demo_variants_share_exactly_the_stages_they_compute_identically():
    from tomcap.demo.variants import all_variants

    cfg = _cfg(generate={"decode": {"guidance_scale": 2.0}})
    refs = {st.name: f"ref-{st.name}" for st in STAGES}
    variants = all_variants(cfg)
    shared = {name: set(reusable(cfg, refs, v)) for name, v in variants.items()}
    assert shared["full"] == set(refs)
    upstream = {"corpus", "embed", "embed_images", "gap", "index", "paired_images", "test_images",
                "nearest_caption", "evaluate_nearest"}  # the model-free baseline is the same for every variant
    for name in ("no_correction", "no_noise", "no_retrieval", "paired_oracle"):
        assert shared[name] == upstream, name  # training changed: train, generate, evaluate rerun
    assert shared["no_cfg"] == upstream | {"train"}  # only decoding changed


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_library_never_imports_prefect_tasks_or_flows():
    for f in (REPO / "tomcap").rglob("*.py"):
        for line in f.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import prefect", "from prefect", "import tasks", "from tasks",
                                            "import flows", "from flows")), f"{f}: {line}"
    mods = _imports_after("import tomcap.pipeline, tomcap.settings, tomcap.cli.main as m; m.build_parser()")
    assert not {m for m in mods if m.split(".")[0] in {"prefect", "tasks", "flows"}}


def test_light_commands_do_not_import_torch_open_clip_or_prefect():
    mods = _imports_after("import tomcap_cli.main as m; from tomcap.cli.main import build_parser\n"
                          "build_parser(m.COMMAND_MODULES).parse_args(['corpus', '--source', 'x.jsonl'])\n"
                          "import tomcap.settings")
    heavy = {m for m in mods if m.split(".")[0] in {"torch", "open_clip", "prefect", "faiss", "transformers"}}
    assert not heavy, sorted(heavy)[:5]


def test_pool_workers_get_disjoint_core_shares():
    from flows.runners import core_share

    assert [core_share(s, 2, [0, 1]) for s in range(3)] == [[0], [1], [0]]
    assert [core_share(s, 2, [0, 1, 2, 3, 4]) for s in range(2)] == [[0, 1], [2, 3]]
    assert [core_share(s, 3, [4, 5]) for s in range(3)] == [[4], [5], [4]]


def test_with_clip_reaches_every_clip_section_and_refuses_other_fields():
    from tomcap.settings import CLIP_SECTIONS

    cfg = PipelineConfig.model_validate({"clip": {"model": "RN50", "pretrained": "old.safetensors"}})
    # the dumped-and-edited route is refused (every section kept its own copy, which would silently win)
    data = cfg.model_dump()
    data["clip"]["pretrained"] = "new.safetensors"
    with pytest.raises(ValueError, match="clip.pretrained is 'new.safetensors' but embed.pretrained is 'old"):
        PipelineConfig.model_validate(data)
    # a run form's clip (settings.overlay) reaches every section, as clip: in a file does
    from tomcap.settings import overlay

    formed = overlay(cfg, {"clip": {"model": "RN50", "pretrained": "new.safetensors"}})
    assert all(getattr(formed, s).pretrained == "new.safetensors" for s in CLIP_SECTIONS)
    new = cfg.with_clip(pretrained="new.safetensors")
    assert new.clip.pretrained == "new.safetensors" and new.clip.model == "RN50"
    assert all(getattr(new, s).pretrained == "new.safetensors" and getattr(new, s).model == "RN50"
               for s in CLIP_SECTIONS)
    assert new.evaluate == cfg.evaluate
    with pytest.raises(ValueError, match="not a CLIP field"):
        cfg.with_clip(steps=3)
