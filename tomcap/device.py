"""Where a stage runs and in which precision: one pure policy for every stage.

``device: auto`` (the default) is CUDA when present, else the CPU. ``precision: auto`` is bf16
autocast where it is numerically safe and fast: on a CUDA device with bf16 support, for the CLIP
encoders (embeddings are L2-normalised and stored as float16 anyway) and for the adaptor's training
forward (the loss and the optimizer stay fp32). The CPUs here have no native bf16, where autocast
would be slower than fp32, so ``auto`` is fp32 there. Generation stays fp32: beam search ranks
hypotheses by summed log-probabilities, and bf16 logits flip near-ties.
"""
from __future__ import annotations

import contextlib

import torch

AUTO = "auto"


def resolve_device(name: str | torch.device | None = None, cuda_available: bool | None = None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available else cpu; anything else as given."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == AUTO:
        has_cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
        return torch.device("cuda" if has_cuda else "cpu")
    return torch.device(name)


def _cuda_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: torch.device, bf16_ok: bool | None = None) -> str:
    """``"auto"`` -> "bf16" on a bf16-capable CUDA device, else "fp32"; explicit values stay."""
    if precision != AUTO:
        return precision
    ok = _cuda_bf16(device) if bf16_ok is None else bf16_ok
    return "bf16" if ok and device.type == "cuda" else "fp32"


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for encoder inference on a bf16-capable CUDA device; a no-op elsewhere."""
    if _cuda_bf16(device):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
