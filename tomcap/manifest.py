"""Manifests and integrity: what an artifact folder's ``manifest.json`` says, and whether its files still match.

Every read of a manifest checks the files' sizes; the first time a process uses an artifact it also checks
every file's sha256 against the manifest and remembers the files' (device, inode, size, mtime), so later uses
cost one ``stat`` per file. A file that differs is a :class:`DamagedArtifactError` naming it and the rebuild.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .config import canonical_json, hash_text
from .constants import HASH_CHUNK_BYTES, MANIFEST_NAME
from .errors import ArtifactError

HASH_THREADS = 4
"""Files of one artifact are hashed in parallel (hashlib releases the GIL on large buffers)."""
_STAGE_COMMANDS = {"embed_images": "embed-images", "embed_shard": "embed"}
"""CLI command of a stage whose name differs from it (for the rebuild hint)."""


class DamagedArtifactError(ArtifactError):
    """A complete artifact (valid manifest) whose files no longer match the manifest."""


def rebuild_fix(stage: str, folder: Path) -> str:
    cmd = _STAGE_COMMANDS.get(stage, stage)
    return f"rebuild it: rerun `tomcap {cmd} --force` (or delete {folder} and rerun)"


def _damaged(folder: Path, stage: str, name: str, what: str) -> DamagedArtifactError:
    return DamagedArtifactError(f"file '{name}' of this '{stage}' artifact {what}; it does not match the manifest "
                                "and is not used", path=Path(folder) / name, fix=rebuild_fix(stage, folder))


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    size: int
    sha256: str


class Manifest(BaseModel):
    """What ``manifest.json`` holds. ``info`` carries stage-specific facts (dims, metrics, timings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    stage: str
    stage_version: str
    key: str
    config: dict[str, Any]
    config_fingerprint: str
    upstream: dict[str, str]
    fingerprint: str
    files: dict[str, FileEntry]
    rows: dict[str, Any]
    versions: dict[str, str]
    created_at: str
    duration_s: float
    info: dict[str, Any] = {}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _stat_keyed_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return file_sha256(Path(path))


def input_sha256(path: Path | str) -> str:
    """sha256 of a stage's input file, hashed once per (path, size, mtime, inode) in this process.

    A cache key is asked for several times per run (the task's cache policy, its run name, the stage
    itself); a corpus or weights file should be read once, and a rewritten file (new mtime or inode) is
    hashed again. Artifact verification never uses this: it re-reads every file (``file_sha256``)."""
    p = Path(path).resolve()
    st = p.stat()
    return _stat_keyed_sha256(str(p), st.st_size, st.st_mtime_ns, st.st_ino)


def content_fingerprint(files: Mapping[str, FileEntry]) -> str:
    return hash_text(canonical_json({k: v.sha256 for k, v in sorted(files.items())}))


def read_manifest(folder: Path) -> Manifest:
    """Read and check a folder's manifest: it must parse and every listed file must be present."""
    folder = Path(folder)
    mpath = folder / MANIFEST_NAME
    if not mpath.is_file():
        raise ArtifactError(
            "no manifest.json: not a (complete) tomcap artifact",
            path=folder,
            fix="pass an artifact folder written by tomcap, or rerun the stage that builds it",
        )
    try:
        manifest = Manifest.model_validate_json(mpath.read_bytes())
    except ValueError as err:
        raise ArtifactError(f"manifest.json is invalid ({err.__class__.__name__})", path=mpath,
                            fix="delete the folder and rerun the stage") from None
    for name, entry in manifest.files.items():
        f = folder / name
        if not f.is_file():
            raise _damaged(folder, manifest.stage, name, "is missing or truncated (no such file)")
        if (size := f.stat().st_size) != entry.size:
            raise _damaged(folder, manifest.stage, name,
                           f"is missing or truncated ({size} bytes, the manifest says {entry.size})")
    if content_fingerprint(manifest.files) != manifest.fingerprint:
        raise DamagedArtifactError("manifest.json was edited (its fingerprint does not match its file list)",
                                   path=mpath, fix=rebuild_fix(manifest.stage, folder))
    return manifest


_verified: dict[tuple[int, int, int, int], str] = {}
"""sha256 of files this process has checked (or written), by (device, inode, size, mtime): a file shared by
hard links (index shards are links to the embedding shards) is hashed once, and an edited one again."""
_verified_lock = threading.Lock()


def _file_id(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def remember_verified(folder: Path, manifest: Manifest) -> None:
    ids = {_file_id(Path(folder) / name): entry.sha256 for name, entry in manifest.files.items()}
    with _verified_lock:
        _verified.update(ids)


def verify_artifact(folder: Path, *, recheck: bool = False) -> Manifest:
    """The manifest of ``folder`` after checking every file's size and sha256 against it.

    A file is hashed the first time this process sees it (or when its size, mtime or inode change), later
    checks cost a ``stat``; ``recheck`` hashes everything (``tomcap verify``). Raises :class:`DamagedArtifactError`.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    ids = {name: _file_id(folder / name) for name in sorted(manifest.files)}
    todo = [n for n, fid in ids.items() if recheck or _verified.get(fid) != manifest.files[n].sha256]
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(HASH_THREADS, len(todo)))) as pool:
            digests = dict(zip(todo, pool.map(lambda n: file_sha256(folder / n), todo)))
        for name in todo:
            if digests[name] != manifest.files[name].sha256:
                raise _damaged(folder, manifest.stage, name,
                               "has other content than when it was written (sha256 differs)")
        with _verified_lock:
            _verified.update({ids[n]: digests[n] for n in todo})
    return manifest
