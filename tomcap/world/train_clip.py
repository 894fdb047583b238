"""Contrastive training of the tiny world CLIP on generated image-caption pairs (CPU or CUDA).

Pairs are generated on the fly from a per-step seed (single-threaded, so the same seed gives the
same batches), train scenes whose attribute key occurs in the test split are skipped, and the
inverse temperature is fixed at a high value (low temperature): Liang et al. (2022, "Mind the
Gap") show the modality gap of random initialisation then survives training, as in real CLIP.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .captions import scene_captions
from .config import UNIFORM_MIX, ClipPhase, ClipTrainConfig, WorldConfig
from .probe import image_tensor, preprocess_stats, probe_clip
from .render import render_batch
from .scenes import Scene, mutate_scene, scene_stream
from .splits import test_keys

log = logging.getLogger(__name__)

TRAIN_STREAM = "clip-train"
PROBE_IMAGES_DURING_TRAINING = 300


@dataclass
class TrainResult:
    """What a training run produced: the weights file and its record (config, timings, metrics)."""

    weights: Path
    record: dict[str, Any]


def record_path(weights: Path) -> Path:
    """Training record written beside the weights: ``<stem>.record.json``."""
    return Path(weights).with_name(Path(weights).stem + ".record.json")


@contextlib.contextmanager
def determinism(seed: int, threads: int) -> Iterator[None]:
    """Same seed -> same weights on CPU: fixed threads, seeded torch, deterministic kernels.

    The process-wide torch settings are restored on exit, so training inside a larger process
    (a test session, a flow) leaves its thread count and kernels as they were.
    """
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # tiny weights otherwise hit slow denormal arithmetic on CPU
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def build_clip(name: str, device: torch.device) -> tuple[Any, Any]:
    """Random-init open_clip model of a registered architecture and its tokenizer."""
    import open_clip

    from ..clip import register_model_configs

    register_model_configs()
    model = open_clip.create_model(name, pretrained=None, device=device)
    return model, open_clip.get_tokenizer(name)


def lr_at(step: int, cfg: ClipTrainConfig) -> float:
    """Linear warmup then cosine decay to zero (pure function of the step, as in nanoGPT)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_batch(step: int, cfg: ClipTrainConfig, world: WorldConfig,
                excluded: set) -> tuple[list[Scene], list[str]]:
    """Scenes and one of their captions for a step; test-split scene keys are skipped.

    The last ``hard_negative_share`` of the batch are hard negatives: twins of the first scenes
    with one attribute of one object changed.
    """
    rng = np.random.default_rng([cfg.seed, step])
    n_twins = int(cfg.batch_size * cfg.hard_negative_share)
    n_base = cfg.batch_size - n_twins
    scenes: list[Scene] = []
    chunk = 0
    while len(scenes) < n_base:
        cand = scene_stream(cfg.seed, f"{TRAIN_STREAM}-{step}-{chunk}", n_base, world.max_objects,
                            world.single_object_share)
        scenes += [s for s in cand if s.key() not in excluded][: n_base - len(scenes)]
        chunk += 1
    i = 0
    while len(scenes) < cfg.batch_size:
        twin = mutate_scene(scenes[i % n_base], rng, f"{scenes[i % n_base].scene_id}-twin{i}",
                            cfg.hard_negative_mix if cfg.hard_negative_mix != UNIFORM_MIX else None)
        if twin.key() not in excluded:
            scenes.append(twin)
        i += 1
    caps = [scene_captions(s, world.captions_per_image, world.seed, world.relation_share) for s in scenes]
    texts = [c[rng.integers(len(c))] for c in caps]
    return scenes, texts


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices, not biases/norms/embeddings-of-scale; the fixed logit scale is excluded."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_clip(cfg: ClipTrainConfig, world: WorldConfig, out_file: Path,
               device: str | torch.device | None = None, probe_every: int = 0) -> TrainResult:
    """Train from scratch; write fp16 safetensors to ``out_file`` and the training record beside it."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with determinism(cfg.seed, cfg.threads):
        return _train_clip(cfg, world, Path(out_file), dev, probe_every)


def _train_clip(cfg: ClipTrainConfig, world: WorldConfig, out_file: Path, dev: torch.device,
                probe_every: int) -> TrainResult:
    model, tokenizer = build_clip(cfg.model_name, dev)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(cfg.logit_scale))
    model.logit_scale.requires_grad_(False)
    history, seconds = _run_phase(model, tokenizer, cfg, world, dev, 0, probe_every)
    record = _save(model, cfg, world, dev, out_file, {"phase1": {"seconds": round(seconds, 1), "history": history}})
    result = TrainResult(weights=out_file, record=record)
    if cfg.finetune_steps:
        result = finetune_clip(cfg, world, out_file, out_file, dev, probe_every)
        offset = cfg.steps + cfg.finetune_steps
        for i, phase in enumerate(cfg.extra_phases):
            result = continue_clip(cfg, world, out_file, out_file, dev, phase, offset, f"phase{i + 3}", probe_every)
            offset += phase.steps
    return result


def continue_clip(cfg: ClipTrainConfig, world: WorldConfig, weights: Path, out_file: Path, dev: torch.device,
                  phase: ClipPhase, step_offset: int, name: str, probe_every: int = 0) -> TrainResult:
    """One extra phase from saved weights (as phase 2 is run), batches seeded from ``step_offset`` on."""
    from safetensors.torch import load_file

    before = json.loads(record_path(weights).read_text())
    model, tokenizer = build_clip(cfg.model_name, dev)
    model.load_state_dict(load_file(str(weights)))
    model.logit_scale.requires_grad_(False)
    phase_cfg = cfg.model_copy(update={"steps": phase.steps, "lr": phase.lr, "hard_negative_mix": phase.mix,
                                       "warmup_steps": min(cfg.warmup_steps, phase.steps // 10)})
    history, seconds = _run_phase(model, tokenizer, phase_cfg, world, dev, step_offset, probe_every,
                                  phase.single_object_share)
    phases = {**before["phases"], name: {"seconds": round(seconds, 1), "history": history, "step_offset": step_offset}}
    return TrainResult(weights=out_file, record=_save(model, cfg, world, dev, out_file, phases))


def finetune_phase_config(cfg: ClipTrainConfig) -> ClipTrainConfig:
    """Phase 2: a short, lower-lr run whose twins mostly differ in shape (the attribute learned last)."""
    return cfg.model_copy(update={"steps": cfg.finetune_steps, "lr": cfg.finetune_lr,
                                  "warmup_steps": min(cfg.warmup_steps, cfg.finetune_steps // 10),
                                  "hard_negative_mix": cfg.finetune_mix})


def finetune_clip(cfg: ClipTrainConfig, world: WorldConfig, phase1_weights: Path, out_file: Path,
                  dev: torch.device, probe_every: int = 0) -> TrainResult:
    """Phase 2 from the saved phase-1 file (fp16 as on disk, fresh optimizer), so it can be re-run alone."""
    from safetensors.torch import load_file

    phase1 = json.loads(record_path(phase1_weights).read_text())
    model, tokenizer = build_clip(cfg.model_name, dev)
    model.load_state_dict(load_file(str(phase1_weights)))
    model.logit_scale.requires_grad_(False)
    history, seconds = _run_phase(model, tokenizer, finetune_phase_config(cfg), world, dev, cfg.steps, probe_every)
    phases = {"phase1": phase1["phases"]["phase1"], "phase2": {"seconds": round(seconds, 1), "history": history}}
    return TrainResult(weights=out_file, record=_save(model, cfg, world, dev, out_file, phases))


def _run_phase(model: Any, tokenizer: Any, cfg: ClipTrainConfig, world: WorldConfig, dev: torch.device,
               step_offset: int, probe_every: int, single_object_share: float | None = None,
               ) -> tuple[list[dict[str, float]], float]:
    """``cfg.steps`` optimizer steps on fresh batches (seeded by ``step + step_offset``); returns (history, seconds)."""
    mean, std = preprocess_stats(model)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    excluded = test_keys(world)  # from the world as configured: a phase's own share must not move the split
    batch_world = world if single_object_share is None else world.model_copy(
        update={"single_object_share": single_object_share})
    image_size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    history: list[dict[str, float]] = []
    t0 = time.time()
    loss_ema = None
    for step in range(cfg.steps):
        model.train()
        scenes, texts = train_batch(step + step_offset, cfg, batch_world, excluded)
        images = image_tensor(render_batch(scenes, image_size), mean, std).to(dev)
        tokens = tokenizer(texts).to(dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        img, txt, scale = model(images, tokens)
        logits = scale * img @ txt.T
        labels = torch.arange(len(texts), device=dev)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        # Hinge on the batch centroid distance: contrastive loss barely depends on the gap (Liang et
        # al. 2022), so this holds it near real CLIP's instead of letting short training erode it.
        gap = (img.mean(0) - txt.mean(0)).norm()
        loss = loss + cfg.gap_weight * F.relu(cfg.gap_target - gap) ** 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_val = float(loss.detach())
        loss_ema = loss_val if loss_ema is None else 0.95 * loss_ema + 0.05 * loss_val
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("clip step %d/%d (offset %d) loss %.4f (ema %.4f) batch gap %.3f lr %.2e %.1fs", step,
                     cfg.steps, step_offset, loss_val, loss_ema, float(gap.detach()), lr_at(step, cfg),
                     time.time() - t0)
            history.append({"step": step, "loss": loss_val, "loss_ema": loss_ema, "batch_gap": float(gap.detach()),
                            "seconds": time.time() - t0})
        if probe_every and step and step % probe_every == 0:
            metrics = probe_clip(model, tokenizer, world, PROBE_IMAGES_DURING_TRAINING, dev)
            log.info("clip step %d probe %s", step, json.dumps({k: round(v, 3) for k, v in metrics.items()}))
    return history, time.time() - t0


def _save(model: Any, cfg: ClipTrainConfig, world: WorldConfig, dev: torch.device, out_file: Path,
          phases: dict[str, Any]) -> dict[str, Any]:
    """fp16 safetensors (half the committed size; load_state_dict copies back into fp32) + the training record."""
    from safetensors.torch import save_file

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    # One metadata key: safetensors orders several keys by hash map, so the file bytes would vary per process.
    save_file(state, str(out_file), metadata={"tomcap": json.dumps({"model_name": cfg.model_name, "seed": cfg.seed},
                                                                   sort_keys=True)})
    seconds = sum(p["seconds"] for p in phases.values())
    extra = sum(p.steps for p, name in zip(cfg.extra_phases, (f"phase{i + 3}" for i in range(99))) if name in phases)
    steps = cfg.steps + (cfg.finetune_steps if "phase2" in phases else 0) + extra
    record = {"model_name": cfg.model_name, "train_config": cfg.model_dump(mode="json"),
              "world_config": world.model_dump(mode="json"), "device": str(dev),
              "train_seconds": round(seconds, 1), "pairs_seen": steps * cfg.batch_size,
              "n_parameters": sum(p.numel() for p in model.parameters()), "phases": phases}
    record_path(out_file).write_text(json.dumps(record, indent=2))
    return record
