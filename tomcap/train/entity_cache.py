"""A fitted entity head, kept by the content of everything its fit reads, so that runs which fit the same head
fit it once.

The head's fit reads the training rows' labels and clean query embeddings, the noise, the head's config and
initial weights, the seed and the code; nothing of retrieval. So the demo's ``full`` and ``no_retrieval``
variants (and every training seed's retrieval ablation, the gap sweep's pairs) fit bit-identical heads, ~50 s
on one core each. The key hashes those inputs themselves, not configs that name them.

A cache entry is a folder ``<key>/`` with ``head.safetensors`` (the head's state dict after the fit) and
``head.json`` (the fit's info and the weights file's sha256), written beside and renamed into place; an entry
whose weights do not match its JSON, or whose tensors do not fit the head, is refitted and replaced.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..config import canonical_json
from ..manifest import file_sha256

log = logging.getLogger(__name__)

WEIGHTS = "head.safetensors"
INFO = "head.json"
HASH_CHUNK = 65_536
"""Query rows hashed at a time (the embeddings are never held whole)."""


class HeadCache(NamedTuple):
    """Where fitted heads are kept, and the code version that fits them (part of every key)."""

    dir: Path
    code_version: str


def fit_key(head: torch.nn.Module, settings: dict[str, Any], labels: np.ndarray, noise_std: np.ndarray,
            rows: Sequence[Callable[[np.ndarray], np.ndarray]]) -> str:
    """sha256 of what the fit reads: ``settings`` (JSON: config, seed, code version), the head's initial tensors,
    the labels (one row per training row), the noise std, and each function of ``rows`` (rows -> (n, D)
    embeddings: the clean queries, the text embeddings of the prototypes) over every row."""
    h = hashlib.sha256(canonical_json(settings).encode("utf-8"))
    for name, tensor in sorted(head.state_dict().items()):
        h.update(name.encode("utf-8"))
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    h.update(np.ascontiguousarray(noise_std, np.float32).tobytes())
    for take in rows:
        for start in range(0, len(labels), HASH_CHUNK):
            h.update(np.ascontiguousarray(take(np.arange(start, min(start + HASH_CHUNK, len(labels)))),
                                          np.float32).tobytes())
    return h.hexdigest()[:32]


def _read(entry: Path, head: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(state dict, fit info) of a trusted entry for ``head``; None when absent or untrusted."""
    if not (entry / INFO).is_file():
        return None
    try:
        record = json.loads((entry / INFO).read_text(encoding="utf-8"))
        if file_sha256(entry / WEIGHTS) != record["weights_sha256"]:
            raise ValueError("weights do not match head.json")
        state = load_file(entry / WEIGHTS)
        own = head.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise ValueError("tensors do not fit the head")
        return state, record["info"]
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        log.warning("entity head cache %s not used (%s); fitting again", entry, err)
        return None


def load_head(cache_dir: Path, key: str, head: torch.nn.Module) -> dict[str, Any] | None:
    """The fit's info after loading the cached weights into ``head``; None (head untouched) when there is no
    trusted entry."""
    found = _read(Path(cache_dir) / key, head)
    if found is None:
        return None
    head.load_state_dict(found[0])
    log.info("entity head: reused the fit of %s", Path(cache_dir) / key)
    return found[1]


def save_head(cache_dir: Path, key: str, head: torch.nn.Module, info: dict[str, Any]) -> None:
    """Write the entry atomically; a trusted entry another process finished first (same content) stays, an
    untrusted one is replaced."""
    cache_dir = Path(cache_dir)
    entry = cache_dir / key
    tmp = cache_dir / f".{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, tmp / WEIGHTS)
        record = {"key": key, "weights_sha256": file_sha256(tmp / WEIGHTS), "info": info}
        (tmp / INFO).write_text(json.dumps(record, indent=1), encoding="utf-8")
        if entry.exists() and _read(entry, head) is None:
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:  # a trusted entry is there: a non-empty folder is not replaced
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
