"""Helpers of the flow tests: a small real pipeline config (YAML on disk), and which tasks ran."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import yaml

from tomcap.model.tiny import make_random_gpt2
from tomcap.world import WorldConfig, generate_world


def pipeline_yaml(root: Path, n_scenes: int, train_steps: int) -> Path:
    """A pipeline YAML on a generated world (tiny CLIP, random tiny GPT-2) under ``root``."""
    world = generate_world(root / "world", WorldConfig(n_train_scenes=n_scenes, n_test_images=4, seed=5))
    texts = [json.loads(line)["caption"] for line in world.corpus_file.read_text().splitlines()]
    gpt2 = make_random_gpt2(root / "gpt2", texts[:400])
    cfg = {
        "clip": {"model": "tomcap-test-tiny"},
        "corpus": {"sources": [{"path": str(world.corpus_file), "name": "world"}]},
        "embed": {"dtype": "float32", "batch_size": 64},
        "embed_images": {"images": str(world.test_images_dir)},
        "test_images": {"images": str(world.test_images_dir)},
        "gap": {"sample_rows": 200},
        "index": {"eval_queries": 8},
        "train": {"model": {"gpt2_dir": str(gpt2), "k": 1, "lora_rank": 4}, "steps": train_steps, "batch_size": 4,
                  "warmup_steps": 2, "val_size": 4, "eval_every": 50, "checkpoint_every": 10},
        "generate": {"decode": {"strategy": "greedy", "max_new_tokens": 4}, "annotations": str(world.test_annotations)},
        "evaluate": {"meteor": False, "refs": str(world.test_annotations)},
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def task_states_since(start: dt.datetime) -> dict[str, list[str]]:
    """Task name -> states of the task runs started after ``start`` (current Prefect API). Subflow
    calls, which appear as task runs named after their flow ('tomcap-...'), are left out; run names
    ('train-1cecc7eb') are reduced to their task ('train')."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=start)))
    states: dict[str, list[str]] = {}
    for r in runs:
        if not r.name.startswith("tomcap-"):
            states.setdefault(re.sub(r"-[0-9a-f]{8}$", "", r.name), []).append(r.state.name)
    return states


def world_datastore(root: Path, n_scenes: int, n_test: int, seed: int, clip: str = "tomcap-test-tiny"):
    """A generated world under ``root`` and its library-built stages (tiny CLIP, float32 embeddings):
    (world, data dir, corpus, embed, index, test-image embeddings)."""
    from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
    from tomcap.embed import EmbedConfig, ImageEmbedConfig, run_embed, run_embed_images
    from tomcap.index import IndexConfig, run_index

    world = generate_world(root / "world", WorldConfig(n_train_scenes=n_scenes, n_test_images=n_test, seed=seed))
    data = root / "data"
    corpus = run_corpus(CorpusConfig(sources=[SourceConfig(path=world.corpus_file)]), data)
    embed = run_embed(EmbedConfig(model=clip, dtype="float32"), data, corpus)
    index = run_index(IndexConfig(eval_queries=8), data, embed=embed, corpus=corpus)
    images = run_embed_images(ImageEmbedConfig(model=clip, images=world.test_images_dir, dtype="float32"), data)
    return world, data, corpus, embed, index, images
