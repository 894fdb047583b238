"""Loading CLIP models through open_clip, with the project's own architectures registered.

Users with network pass any open_clip name and pretrained tag (``ViT-B-32`` / ``openai``); the
offline default and the tests use small architectures from ``tomcap/model_configs/*.json``,
registered the open_clip way (``add_model_config``), with random init or local safetensors.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .artifacts import input_sha256
from .constants import FINGERPRINT_CHARS, SHIPPED_MODELS_DIR
from .errors import ConfigError

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
RANDOM_INIT = "random-init"
"""Fingerprint of an un-pretrained model (``pretrained: null``)."""


@functools.cache
def register_model_configs() -> None:
    """Add the project's JSON architectures to open_clip's registry (once per process)."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)


def list_models() -> list[str]:
    """All architecture names open_clip knows, ours included."""
    import open_clip

    register_model_configs()
    return sorted(open_clip.list_models())


def resolve_pretrained(name: str, pretrained: str | None) -> str | None:
    """A pretrained tag stays a tag; anything that looks like a path must exist.

    A bare file name is also looked up among the shipped models (``data/models/``).
    """
    if pretrained is None or pretrained == "":
        return None
    import open_clip

    if pretrained in open_clip.list_pretrained_tags_by_model(name):
        return pretrained
    p = Path(pretrained)
    if not p.exists() and not p.is_absolute() and (SHIPPED_MODELS_DIR / p).exists():
        p = SHIPPED_MODELS_DIR / p
    if not p.exists():
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"pretrained weights '{pretrained}' for model '{name}' are neither a known tag nor an existing file",
            fix=f"pass an existing .safetensors path or one of the tags {tags or '(none for this model)'}",
        )
    return str(p.resolve())


def tag_weights_cached(name: str, tag: str) -> bool:
    """Whether open_clip's weights for (name, tag) are already on disk (Hugging Face or URL cache)."""
    from open_clip import pretrained as oc

    cfg = oc.get_pretrained_cfg(name, tag)
    if cfg.get("file"):
        return os.path.exists(cfg["file"])
    if cfg.get("hf_hub"):
        from .hub import cached_file

        model_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or oc.HF_WEIGHTS_NAME
        safe = getattr(oc, "_get_safe_alternatives", lambda f: ())  # open_clip's .safetensors names, if it has them
        if cached_file(model_id, (*safe(filename), filename)):
            return True
    url = cfg.get("url")
    return bool(url) and os.path.exists(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url)))


def tag_weights_access(name: str, tag: str) -> contextlib.AbstractContextManager:
    """Context to load (name, tag) in: the hub as usual when reachable, cache-only when offline and
    cached; offline and not cached is a ConfigError at once (no retries, no socket timeouts)."""
    from .hub import cache_location, hub_endpoint, hub_offline, hub_reachable

    if hub_reachable():
        return contextlib.nullcontext()
    if tag_weights_cached(name, tag):
        return hub_offline()
    raise ConfigError(
        f"CLIP weights '{name}' pretrained='{tag}' are not in the local cache ({cache_location()}) and "
        f"{hub_endpoint()} is unreachable (offline)",
        fix="set clip.pretrained (or --pretrained) to a local open_clip weights file (.safetensors), or fill "
            "HF_HOME's cache on a machine with network and copy it here; pretrained: null builds a random-init model")


def pretrained_fingerprint(pretrained: str | None) -> str:
    """Identity of the weights for cache keys: file hash for a path, the tag otherwise."""
    if pretrained is None:
        return RANDOM_INIT
    p = Path(pretrained)
    return f"sha256:{input_sha256(p)[:FINGERPRINT_CHARS]}" if p.is_file() else f"tag:{pretrained}"


@dataclass
class LoadedClip:
    """A CLIP model ready for inference plus what is needed to feed it."""

    name: str
    pretrained: str | None
    model: Any  # open_clip.CLIP (kept untyped: open_clip is imported lazily)
    preprocess: Any
    tokenizer: Any
    device: torch.device

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else int(
            self.model.visual.output_dim)

    @property
    def fingerprint(self) -> str:
        return f"{self.name}@{pretrained_fingerprint(self.pretrained)}"


_INIT_LOCK = threading.Lock()
"""torch's RNG is process-global: two threads seeding and drawing init weights at once would
interleave their draws (scale-out tasks on a threaded runner build models concurrently)."""


def load_seeded_clip(name: str, pretrained: str | None, device: str | torch.device | None,
                     init_seed: int) -> LoadedClip:
    """:func:`load_clip` with random init seeded by ``init_seed``, so that 'random-init' names one model
    (the pipeline's stages and the evaluation's CLIP metrics then load the same one)."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return load_clip(name, pretrained, device=device)


def seeded_fingerprint(name: str, pretrained: str | None, init_seed: int) -> str:
    """``name@weights`` (weights by file hash or tag), ``:seed<n>`` added for random init."""
    weights = pretrained_fingerprint(resolve_pretrained(name, pretrained))
    return f"{name}@{weights}" + (f":seed{init_seed}" if weights == RANDOM_INIT else "")


def default_device() -> torch.device:
    from .device import resolve_device

    return resolve_device("auto")


def load_clip(name: str, pretrained: str | None = None, device: str | torch.device | None = None) -> LoadedClip:
    """``open_clip.create_model_and_transforms(name, pretrained=...)`` with clear errors, in eval mode."""
    import open_clip

    register_model_configs()
    if name not in open_clip.list_models():
        raise ConfigError(
            f"open_clip does not know the model '{name}'",
            fix="use one of the names printed by `tomcap models clip` (open_clip.list_models())",
        )
    resolved = resolve_pretrained(name, pretrained)
    from .device import resolve_device

    dev = resolve_device(device)
    is_tag = resolved is not None and not Path(resolved).exists()
    with tag_weights_access(name, resolved) if is_tag else contextlib.nullcontext():
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=resolved, device=dev)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    log.info("loaded CLIP %s (%s) on %s", name, resolved or RANDOM_INIT, dev)
    return LoadedClip(name=name, pretrained=resolved, model=model, preprocess=preprocess, tokenizer=tokenizer,
                      device=dev)
