"""Fast CLIP text encoding: sort by token length, cut each batch to its longest sequence.

For a causal text tower whose output is pooled at the EOT token (CLIP's ``argmax`` pooling), the
hidden state at position p depends only on tokens ≤ p, so dropping the padding after the longest
EOT of a batch changes nothing but the cost (attention and MLP scale with the sequence length;
COCO captions use ~15 of CLIP's 77 positions). Towers where that is not exact (no causal mask,
mean pooling, Hugging Face text towers) are detected and encoded at full context instead.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..clip import LoadedClip

log = logging.getLogger(__name__)

EXACT_POOLS = frozenset({"argmax", "eos", "first"})
"""Pooling types that read a position ≤ the EOT, hence unaffected by cutting the padding after it."""
PROBE_TEXTS = ("a photo of a dog on a red couch", "two people riding bicycles down a busy city street at dusk")
PROBE_TOLERANCE = 1e-5
"""Max abs difference allowed between truncated and full-context probe embeddings (fp32)."""
TOKENIZE_CHUNK = 4096
"""Captions tokenised per call (bounds the (chunk, context) int64 token buffer)."""


@dataclass
class TextEncodeStats:
    """What one call encoded: texts, padded token positions actually computed, mode used."""

    texts: int = 0
    positions: int = 0
    truncated: bool = False


def truncation_supported(clip: LoadedClip) -> bool:
    """Structural check: an open_clip ``CLIP`` text tower with a causal mask and EOT/first-token pooling."""
    m = clip.model
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask", "text_pool_type")
    if not all(hasattr(m, a) for a in needed):
        return False
    return m.attn_mask is not None and m.text_pool_type in EXACT_POOLS


def cpu_has_fast_bf16() -> bool:
    """Native bf16 matmuls (AVX512-BF16 or AMX); without them CPU bf16 autocast is slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def _autocast(device: torch.device, precision: str):
    from ..device import resolve_precision

    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cpu" and precision == "bf16" and not cpu_has_fast_bf16():
        log.warning("this CPU (%s) has no native bf16: bf16 autocast will be slower than fp32",
                    torch.backends.cpu.get_cpu_capability())
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _encode_truncated(model, tokens: torch.Tensor) -> torch.Tensor:
    """``CLIP.encode_text`` on tokens (B, L) with L ≤ context: positions and causal mask cut to L. -> (B, D)."""
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        proj = model.text_projection
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x


def _cut(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the columns after the last non-pad token of any row (pad id 0; EOT is never 0)."""
    nonzero = (tokens != 0).to(torch.int64)
    last = int((nonzero * torch.arange(1, tokens.shape[1] + 1)).max())
    return tokens[:, :max(last, 1)]


@torch.inference_mode()
def probe_exact(clip: LoadedClip) -> bool:
    """Empirical check of truncation on the probe texts against full-context ``encode_text`` (fp32)."""
    tokens = clip.tokenizer(list(PROBE_TEXTS)).to(clip.device)
    full = clip.model.encode_text(tokens).float()
    cut = _encode_truncated(clip.model, _cut(tokens).to(clip.device)).float()
    diff = float((full - cut).abs().max())
    if diff > PROBE_TOLERANCE:
        log.warning("per-batch truncation changes %s's text embeddings by %.2e: using full context", clip.name, diff)
    return diff <= PROBE_TOLERANCE


def use_truncation(clip: LoadedClip, requested: bool) -> bool:
    """Whether to truncate: requested, structurally supported and confirmed on probe texts."""
    if not requested:
        return False
    if not truncation_supported(clip):
        log.info("text tower of %s is not causal/EOT-pooled: full-context encoding", clip.name)
        return False
    return probe_exact(clip)


def length_batches(sorted_lengths: np.ndarray, batch_size: int) -> list[tuple[int, int]]:
    """[start, end) batches over length-sorted captions (N,), at most batch_size each.

    A batch is closed at a length change once it holds batch_size // 4 captions: large corpora get
    padding-free batches, while rare lengths are merged instead of making tiny (inefficient) GEMMs.
    """
    min_batch = max(1, batch_size // 4)
    out, a, n = [], 0, len(sorted_lengths)
    for i in range(1, n + 1):
        if i == n or i - a == batch_size or (sorted_lengths[i] != sorted_lengths[i - 1] and i - a >= min_batch):
            out.append((a, i))
            a = i
    return out


def tokenize(clip: LoadedClip, texts: Sequence[str]) -> torch.Tensor:
    """Token ids (N, context) int64, tokenised in chunks."""
    parts = [clip.tokenizer(list(texts[a:a + TOKENIZE_CHUNK])) for a in range(0, len(texts), TOKENIZE_CHUNK)]
    if not parts:
        return torch.zeros((0, 1), dtype=torch.int64)
    return torch.cat(parts)


@torch.inference_mode()
def encode_texts(clip: LoadedClip, texts: Sequence[str], *, batch_size: int = 256, precision: str = "fp32",
                 truncate: bool = True, progress: bool | None = None,
                 stats: TextEncodeStats | None = None) -> np.ndarray:
    """L2-normalised text embeddings (N, D) float32, in the order of ``texts``.

    ``truncate``: sort by token length and cut each batch to its longest caption (only where exact);
    ``precision``: "fp32", or "bf16"/"fp16" autocast (bf16 is the fast CPU choice).
    """
    stats = stats if stats is not None else TextEncodeStats()
    dim = clip.embed_dim
    out = np.empty((len(texts), dim), np.float32)
    if not texts:
        return out
    truncated = use_truncation(clip, truncate)
    stats.truncated = truncated
    tokens = tokenize(clip, texts)
    if truncated:
        lengths = (tokens != 0).to(torch.int64).cumsum(1).argmax(1)  # index of the last non-pad token
        order = torch.argsort(lengths, stable=True).numpy()
        batches = length_batches(lengths.numpy()[order], batch_size)
    else:
        order = np.arange(len(texts))
        batches = [(a, min(a + batch_size, len(texts))) for a in range(0, len(texts), batch_size)]
    model, dev = clip.model, clip.device
    bar = tqdm(total=len(texts), desc="embed texts", unit="cap", disable=None if progress is None else not progress)
    with _autocast(dev, precision):
        for a, b in batches:
            idx = order[a:b]
            batch = tokens[idx]
            if truncated:
                batch = _cut(batch)
                feats = _encode_truncated(model, batch.to(dev))
            else:
                feats = model.encode_text(batch.to(dev))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
            out[idx] = feats.cpu().numpy()
            stats.texts += len(idx)
            stats.positions += int(batch.shape[0] * batch.shape[1])
            bar.update(len(idx))
    bar.close()
    return out
