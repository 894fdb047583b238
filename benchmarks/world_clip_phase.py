"""One more fine-tuning phase of the shipped world CLIP, scored on the VALIDATION split (issue 20): how phase 5
was chosen. Writes the candidate weights + record and ``val_probe.json`` under ``--out``; nothing reads test.

    nice -n 5 .venv/bin/python benchmarks/world_clip_phase.py --out /tmp/p5/swap --steps 1200 --lr 3e-4 --mix 5,3,1,1,4

Then compare candidates with the demo's captioner on validation:
``benchmarks/tune_adaptor.py --try name:clip.pretrained=/tmp/p5/swap/tomcap-world-clip.safetensors``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "models" / "tomcap-world-clip.safetensors"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=SHIPPED, help="start from this file (its record beside it)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--mix", default="5,3,1,1,4", help="twin odds: shape, colour, size, position[, swap]")
    ap.add_argument("--single-share", type=float, default=None, help="one-object share of the batches")
    ap.add_argument("--val-images", type=int, default=1000)
    args = ap.parse_args(argv)

    import torch

    from tomcap.clip import load_clip
    from tomcap.world.config import ClipPhase, ClipTrainConfig, WorldConfig
    from tomcap.world.models import BINDING_IMAGES
    from tomcap.world.probe import probe_clip
    from tomcap.world.train_clip import continue_clip, determinism, record_path

    rec = json.loads(record_path(args.weights).read_text())
    cfg, world = ClipTrainConfig(**rec["train_config"]), WorldConfig(**rec["world_config"])
    # New batches: seeded after every step the file has already seen.
    offset = cfg.steps + cfg.finetune_steps + sum(p.steps for p in cfg.extra_phases)
    phase = ClipPhase(steps=args.steps, lr=args.lr, mix=tuple(float(x) for x in args.mix.split(",")),
                      single_object_share=args.single_share)
    # The schedule with this phase appended: the candidate's record then counts its steps and can be shipped as is.
    grown = cfg.model_copy(update={"extra_phases": (*cfg.extra_phases, phase)})
    out = args.out / args.weights.name
    t0 = time.perf_counter()
    with determinism(cfg.seed, 1):
        continue_clip(grown, world, args.weights, out, torch.device("cpu"), phase, offset,
                      f"phase{len(grown.extra_phases) + 2}")
        clip = load_clip(cfg.model_name, pretrained=str(out), device="cpu")
        metrics = probe_clip(clip.model, clip.tokenizer, world, args.val_images, clip.device, split="val",
                             binding_images=BINDING_IMAGES)
    metrics |= {"phase": phase.model_dump(mode="json"), "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "val_probe.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
