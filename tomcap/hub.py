"""Pretrained weights named by hub id or tag: local cache first, and a fast, clear failure offline.

Without network, ``hf_hub_download`` and ``from_pretrained`` either fail after retries or, behind a
firewall that drops packets, wait for socket timeouts; and their errors are tracebacks about HTTP.
Here: a cached copy is used without touching the network; a missing one on an offline machine is
one :class:`~tomcap.errors.ConfigError` naming the weights and how to pass a local path or cache.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
"""Seconds the reachability probe of the hub waits for a TCP connection."""
_TRUE = {"1", "true", "yes", "on"}
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_requested() -> bool:
    """The user said offline (``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in _OFFLINE_VARS)


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@functools.lru_cache(maxsize=8)
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers a TCP connection within PROBE_TIMEOUT_S (once per process)."""
    if offline_requested():
        return False
    url = urlparse(hub_endpoint())
    return _reachable(url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80))


def cache_location() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_file(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    """Path of the first of ``filenames`` of ``repo_id`` in the local Hugging Face cache, else None."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return hit
    return None


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Make huggingface_hub serve from its cache only (it reads HF_HUB_OFFLINE at import time)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
