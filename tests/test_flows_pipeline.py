"""The demo/pipeline flows on a tiny config under Prefect: a full run, then a rerun where every task is Cached."""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from flow_helpers import task_states_since  # tests/ is on sys.path (pytest rootdir conftest)

from tomcap.model.tiny import make_random_gpt2
from tomcap.settings import PipelineConfig
from tomcap.world import WorldConfig, generate_world

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def tiny_config(root: Path) -> PipelineConfig:
    texts_world = generate_world(root / "tok-world", WorldConfig(n_train_scenes=40, n_test_images=1, seed=3))
    texts = [json.loads(line)["caption"] for line in texts_world.corpus_file.read_text().splitlines()]
    gpt2 = make_random_gpt2(root / "gpt2", texts)
    return PipelineConfig.model_validate({
        "clip": {"model": "tomcap-test-tiny"},
        "world": {"n_train_scenes": 40, "n_test_images": 4, "seed": 3, "render_train_images": True},
        "demo": {"unpaired_world": {"seed": 1000, "n_train_scenes": 1, "n_test_images": 8},
                 "variants": ["full", "no_cfg", "paired_oracle"]},
        "embed": {"dtype": "float32"},
        "index": {"eval_queries": 8},
        "gap": {"sample_rows": 100},
        "train": {"model": {"gpt2_dir": str(gpt2), "k": 2, "lora_rank": 4}, "steps": 3, "batch_size": 4, "threads": 1,
                  "warmup_steps": 1, "val_size": 4, "eval_every": 2, "checkpoint_every": 2},
        "generate": {"decode": {"strategy": "greedy", "max_new_tokens": 4, "guidance_scale": 2.0}},
        "evaluate": {"meteor": False},
    })


def trained_under_subflow(start: dt.datetime) -> set[str]:
    """Names of the flows whose runs hold the train task runs started after ``start``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        since = TaskRunFilter(start_time=TaskRunFilterStartTime(after_=start))
        runs = [r for r in client.read_task_runs(task_run_filter=since) if r.name.startswith("train-")]
        return {client.read_flow(client.read_flow_run(r.flow_run_id).flow_id).name for r in runs}


def test_demo_flow_then_fully_cached_rerun(prefect_harness, tmp_path):
    from flows.demo import demo

    cfg = tiny_config(tmp_path)
    data = str(tmp_path / "data")
    cold_start = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    report = demo(cfg, data)
    cold = time.perf_counter() - t0
    metrics = json.loads((Path(report.path) / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"full", "no_cfg", "paired_oracle"}
    assert {"CIDEr", "Bleu_4", "CLIPScore", "attr_acc"} <= set(metrics["variants"]["full"])
    assert metrics["gap"]["before"]["centroid_gap"] > metrics["gap"]["after"]["centroid_gap"]
    assert "| full |" in (Path(report.path) / "report.md").read_text()
    assert metrics["baselines"]["nearest_caption"] != metrics["variants"]["full"]
    assert trained_under_subflow(cold_start) == {"tomcap-demo-variants"}

    start = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    again = demo(cfg, data)
    warm = time.perf_counter() - t0
    states = task_states_since(start)
    assert again.path == report.path
    assert states and all(s == "Cached" for runs in states.values() for s in runs), states
    assert {"world", "corpus", "embed", "gap", "index", "train", "generate", "evaluate", "demo_report"} <= set(states)
    # No timing assertion: on the tiny config Prefect's per-task bookkeeping dominates both runs; the
    # cached-rerun ratio belongs to a benchmark on a realistic config.
    print(f"cold {cold:.1f}s, cached rerun {warm:.1f}s")


def test_decoding_change_and_datastore_swap_rerun_only_generation_and_evaluation(prefect_harness, tmp_path):
    from flows.demo import demo
    from flows.deployments import evaluate_checkpoint
    from tasks.stages import STAGE_TASKS
    from tomcap.artifacts import ArtifactStore, load_ref
    from tomcap.corpus import SourceConfig
    from tomcap.demo.wiring import demo_pipeline_config
    from tomcap.world.stage import world_artifact_paths

    cfg = tiny_config(tmp_path)
    cfg = cfg.model_copy(update={"demo": cfg.demo.model_copy(update={"variants": ("full",)})})
    data = str(tmp_path / "data")
    demo(cfg, data)
    store = ArtifactStore(data)
    world = next(m for m in store.list("world") if m.config["seed"] == cfg.world.seed)
    unpaired = next(m for m in store.list("world") if m.config["seed"] != cfg.world.seed)
    wired = demo_pipeline_config(cfg, load_ref(store.path_for("world", world.key)),
                                 load_ref(store.path_for("world", unpaired.key)))
    checkpoint = store.path_for("train", store.list("train")[0].key)
    # Trained in a pool process (pinned to one core): the same checkpoint as the library's own run here, at the
    # same train.threads (float sums depend on the thread count).
    from tomcap.pipeline import run_until

    here = run_until(wired, tmp_path / "in-process", "train")["train"]
    assert here.fingerprint == load_ref(checkpoint).fingerprint
    index = store.path_for("index", store.list("index")[0].key)

    decode = wired.generate.decode.model_copy(update={"guidance_scale": 3.0})
    changed = wired.model_copy(update={"generate": wired.generate.model_copy(update={"decode": decode})})
    start = dt.datetime.now(dt.timezone.utc)
    evaluate_checkpoint(checkpoint=str(checkpoint), index=str(index), config=changed, data_dir=data)
    states = task_states_since(start)
    assert states == {"embed_images": ["Cached"], "generate": ["Completed"], "evaluate": ["Completed"]}, states

    # Swap the datastore: an index built from another corpus (the unpaired world's captions).
    other_corpus = wired.corpus.model_copy(update={"sources": [SourceConfig(
        path=world_artifact_paths(load_ref(store.path_for("world", unpaired.key))).corpus_file, name="other")]})
    corpus_task, embed_task, index_task = (STAGE_TASKS[n] for n in ("corpus", "embed", "index"))
    oc = corpus_task(other_corpus, data)
    other_index = index_task(wired.index, data, embed=embed_task(wired.embed, data, corpus=oc), corpus=oc)
    start = dt.datetime.now(dt.timezone.utc)
    evaluate_checkpoint(checkpoint=str(checkpoint), index=other_index.path, config=wired, data_dir=data)
    states = task_states_since(start)
    assert states == {"embed_images": ["Cached"], "generate": ["Completed"], "evaluate": ["Completed"]}, states

    # A guidance sweep over the same checkpoint and datastore: a plot and one row per scale.
    from tomcap.embed import run_embed_images
    from tomcap.generate.sweep import SweepConfig, run_guidance_sweep

    _, sweep = run_guidance_sweep(SweepConfig(scales=(0.0, 3.0)), wired.generate, wired.evaluate, data,
                                  train=load_ref(checkpoint), index=load_ref(index),
                                  images=run_embed_images(wired.test_images, data))
    assert (Path(sweep.path) / "pareto.png").stat().st_size > 1000
    assert [r["scale"] for r in sweep.manifest().info["table"]] == [0.0, 3.0]
