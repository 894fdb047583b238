"""Project-wide constants: each lives here once and is imported where needed."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""Root of the source checkout (the package is installed editable from it)."""

DATA_DIR_ENV = "TOMCAP_DATA_DIR"
DEFAULT_DATA_DIR = Path(os.environ.get(DATA_DIR_ENV, PROJECT_ROOT / "data"))
"""Where artifacts, generated worlds and caches live unless a config or ``--data-dir`` says otherwise."""

CACHE_DIR_ENV = "TOMCAP_CACHE_DIR"
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tomcap"
"""Per-user caches that belong to no data dir (e.g. METEOR's table in its fast-loading form); never
written into installed packages. ``$TOMCAP_CACHE_DIR`` moves it."""

SHIPPED_MODELS_DIR = PROJECT_ROOT / "data" / "models"
"""Small models the project trains and ships (tiny CLIP, tiny GPT-2), as safetensors."""

ARTIFACTS_SUBDIR = "artifacts"
MANIFEST_NAME = "manifest.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"

FINGERPRINT_CHARS = 16
"""Hex characters kept from sha256 digests for keys and ids (64 bits: collision-free at corpus scale)."""

HASH_CHUNK_BYTES = 1 << 20

SHARED_CAPTIONS_DIR = PROJECT_ROOT.parent / "shared" / "data" / "captions"
"""Real caption annotations kept beside the checkout (../shared/data/captions), used by the demo and benchmarks."""
DEMO_CONFIG_FILE = PROJECT_ROOT / "configs" / "demo.yaml"
"""Pipeline config of `tomcap demo` (the embedded world with the shipped tiny CLIP and GPT-2)."""

CORPUS_UPDATED_EVENT = "tomcap.corpus.updated"
"""Prefect event that triggers the 'retrain' deployment (emitted by `tomcap corpus --emit-event` and `tomcap watch`)."""
