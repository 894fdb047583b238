"""Rerun cost of the pipeline flow: cold run vs unchanged rerun, a decoding change and 1% corpus growth.

Usage: python benchmarks/pipeline_rerun.py OUT.json [--scenes 2000] [--steps 100]

Runs `tomcap_pipeline` on a generated world with the shipped world CLIP and GPT-2, against one
Prefect server started before any timing (server start-up is excluded, as the issue asks), and
prints seconds per scenario and the ratio to the cold run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"


def _config(root: Path, scenes: int, steps: int):
    from tomcap.settings import PipelineConfig
    from tomcap.world import WorldConfig, generate_world

    world = generate_world(root / "world", WorldConfig(n_train_scenes=scenes, n_test_images=100, seed=11))
    return world, PipelineConfig.model_validate({
        "clip": {"model": "tomcap-world-clip", "pretrained": str(MODELS / "tomcap-world-clip.safetensors")},
        "corpus": {"sources": [{"path": str(world.corpus_file), "name": "world"}]},
        "embed": {"dtype": "float32"},
        "embed_images": {"images": str(world.test_images_dir)},
        "test_images": {"images": str(world.test_images_dir)},
        "train": {"model": {"gpt2_dir": str(MODELS / "tomcap-world-gpt2"), "k": 1, "cross_attention_reduce": 1,
                            "decoder_dropout": 0.0}, "steps": steps, "batch_size": 32, "warmup_steps": 5,
                  "eval_every": steps, "checkpoint_every": steps},
        "generate": {"decode": {"strategy": "greedy", "max_new_tokens": 24},
                     "annotations": str(world.test_annotations)},
        "evaluate": {"meteor": False, "refs": str(world.test_annotations)},
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--scenes", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tomcap-bench-rerun-"))
    os.environ.update(PREFECT_HOME=str(root / "prefect"), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING")
    sys.path.insert(0, str(REPO))
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import tomcap_pipeline

    world, cfg = _config(root, args.scenes, args.steps)
    data = str(root / "data")
    times: dict[str, float] = {}
    with prefect_test_harness(server_startup_timeout=180):
        def timed(name: str, c) -> None:
            t0 = time.perf_counter()
            tomcap_pipeline(c, data)
            times[name] = round(time.perf_counter() - t0, 2)
            print(f"{name}: {times[name]:.1f}s", flush=True)

        timed("cold", cfg)
        timed("unchanged", cfg)
        decode = cfg.generate.decode.model_copy(update={"max_new_tokens": 20})
        timed("decode_change", cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"decode": decode})}))
        lines = world.corpus_file.read_text().splitlines()
        extra = [json.dumps({"image_id": f"grow-{i}", "caption": f"a tiny violet star number {i} at the top left"})
                 for i in range(max(1, len(lines) // 100))]
        world.corpus_file.write_text("\n".join(lines + extra) + "\n")
        timed("corpus_grows_1pct", cfg)
    report = {"config": {"scenes": args.scenes, "train_steps": args.steps, "cpus": os.cpu_count()},
              "seconds": times, "ratio_to_cold": {k: round(v / times["cold"], 3) for k, v in times.items()}}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
