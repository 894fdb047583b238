"""The training loop, nanoGPT style: AdamW on trainable params, warmup + cosine, clip, accumulate.

Resumable: the loop checkpoints into ``work_dir/last`` (atomically swapped) and, when it finds a
checkpoint there, restores weights + AdamW moments and continues at its step. Batches and dropout
are seeded by step, so the resumed run ends with the weights an uninterrupted run would have.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..model.adaptor import IGNORE_INDEX, TomcapAdaptor, fuse_activations
from ..model.checkpoint import CHECKPOINT_JSON, load_optimizer_state, load_weights, save_checkpoint
from .config import TrainConfig
from .data import Batch

log = logging.getLogger(__name__)

LAST = "last"
_SEED_STRIDE = 1_000_003
"""Per-step torch seed = seed * stride + step (dropout draws), distinct across steps and seeds."""

LENGTH_CHUNKS = 4
"""Length-sorted sub-batches per micro-batch (see ``backward_in_chunks``): 4 cut the world demo's padded
tokens by ~30% at batch 64; more make the matrix products too small to pay off."""

ProgressFn = Callable[[dict[str, Any]], None]
"""Called after every step with {'step', 'steps', 'loss', 'lr', 'val_loss' (on eval steps)}."""


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def resolve_device(cfg: TrainConfig) -> torch.device:
    from ..device import resolve_device as resolve

    return resolve(cfg.device)


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    from ..device import resolve_precision

    if resolve_precision(cfg.precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_loss(model: TomcapAdaptor, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over caption tokens (labels != IGNORE_INDEX)."""
    states, enc_mask = model.condition_states(batch.condition, batch.keep)
    return model.caption_loss(batch.input_ids, batch.attention_mask, batch.labels, states, enc_mask)


def backward_in_chunks(model: TomcapAdaptor, batch: Batch, cfg: TrainConfig, device: torch.device,
                       scale: float = 1.0) -> float:
    """Backward of ``scale`` x the batch's mean caption loss, computed on length-sorted sub-batches
    (``LENGTH_CHUNKS``, each padded only to its own longest row); returns that loss.

    Each chunk's mean is weighted by its share of the batch's caption tokens, so the loss and the
    gradient are the whole batch's (up to float summation order)."""
    total = max(1, batch.caption_tokens())
    loss_sum = 0.0
    for part in batch.length_chunks(LENGTH_CHUNKS):
        n = part.caption_tokens()
        if n == 0:
            continue
        with autocast(cfg, device):
            loss = batch_loss(model, part.to(device)) * (scale * n / total)
        loss.backward()
        loss_sum += float(loss.detach())
    return loss_sum


@torch.no_grad()
def evaluate_loss(model: TomcapAdaptor, batches: list[Batch], cfg: TrainConfig, device: torch.device) -> float:
    """Token-weighted mean loss over fixed batches (eval mode, no dropout)."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with autocast(cfg, device):
        for b in batches:
            n = int((b.labels[:, 1:] != IGNORE_INDEX).sum())
            total += float(batch_loss(model, b.to(device))) * n
            tokens += n
    model.train(was_training)
    return total / max(1, tokens)


def make_optimizer(model: TomcapAdaptor, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW on trainable params only; matrices decay, vectors (biases, norms, role/null) do not."""
    params = model.trainable_named_parameters()
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    prev = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        first = self.val_losses[0][1] if self.val_losses else None
        last = self.val_losses[-1][1] if self.val_losses else None
        return {"steps": self.steps, "resumed_from": self.resumed_from, "seconds": round(self.seconds, 2),
                "val_loss_first": first, "val_loss_last": last,
                "train_loss_last": self.train_losses[-1] if self.train_losses else None,
                "val_losses": [[s, round(v, 5)] for s, v in self.val_losses]}


def _save_last(work_dir: Path, model: TomcapAdaptor, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig,
               result: TrainResult) -> None:
    """Write the checkpoint beside ``last`` and swap it in, so a kill never leaves a torn ``last``."""
    tmp, last, old = work_dir / f".{LAST}-tmp", work_dir / LAST, work_dir / f".{LAST}-old"
    shutil.rmtree(tmp, ignore_errors=True)
    state = {"val_losses": result.val_losses, "train_losses": result.train_losses}
    save_checkpoint(tmp, model, step=step, optimizer=opt, train_config=cfg.model_dump(mode="json"), state=state)
    if last.exists():
        os.replace(last, old)
    os.replace(tmp, last)
    shutil.rmtree(old, ignore_errors=True)


def train(model: TomcapAdaptor, cfg: TrainConfig, micro_batch: Callable[[int], Batch], val_batches: list[Batch],
          work_dir: Path, progress: ProgressFn | None = None, stop_after: int | None = None) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` steps; resumes from ``work_dir/last`` if present.

    ``micro_batch(i)`` returns global micro-batch i (step s uses i = s * grad_accum + j);
    ``stop_after`` ends early after that many steps (as an interruption would), checkpointing first."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg)
    model.to(device).train()
    fuse_activations(model)
    opt = make_optimizer(model, cfg)
    result = TrainResult(steps=0, resumed_from=0)
    if (work_dir / LAST / CHECKPOINT_JSON).is_file():
        ckpt = load_weights(model, work_dir / LAST)
        load_optimizer_state(opt, model, work_dir / LAST)
        result.resumed_from = result.steps = ckpt.step
        result.val_losses = [tuple(v) for v in ckpt.state.get("val_losses", [])]
        result.train_losses = list(ckpt.state.get("train_losses", []))
        log.info("resuming from step %d (%s)", ckpt.step, work_dir / LAST)
    params = list(model.trainable_named_parameters().values())
    t0 = time.perf_counter()
    if result.steps == 0 and val_batches:
        # The untrained loss, so that the curve shows how far training moved it.
        result.val_losses.append((0, evaluate_loss(model, val_batches, cfg, device)))
    end = cfg.steps if stop_after is None else min(cfg.steps, result.steps + stop_after)
    bar = tqdm(range(result.steps, end), desc="train", unit="step", disable=None, initial=result.steps, total=cfg.steps)
    for step in bar:
        torch.manual_seed(cfg.seed * _SEED_STRIDE + step)
        lr = get_lr(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for j in range(cfg.grad_accum):
            batch = micro_batch(step * cfg.grad_accum + j)
            loss_sum += backward_in_chunks(model, batch, cfg, device, 1.0 / cfg.grad_accum)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        result.steps = step + 1
        result.train_losses.append(round(loss_sum, 5))
        event: dict[str, Any] = {"step": result.steps, "steps": cfg.steps, "loss": loss_sum, "lr": lr}
        if result.steps % cfg.eval_every == 0 or result.steps == cfg.steps:
            val = evaluate_loss(model, val_batches, cfg, device)
            result.val_losses.append((result.steps, val))
            event["val_loss"] = val
            bar.set_postfix(loss=f"{loss_sum:.3f}", val=f"{val:.3f}")
        if result.steps % cfg.checkpoint_every == 0 or result.steps == end:
            _save_last(work_dir, model, opt, result.steps, cfg, result)
        if progress is not None:
            progress(event)
    bar.close()
    result.seconds = time.perf_counter() - t0
    return result
