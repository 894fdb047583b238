"""Content-addressed artifact store.

Every stage output is a folder ``<data_dir>/artifacts/<stage>/<key>/`` holding its files and a
``manifest.json`` that describes them. The key is a hash of the stage name, the stage's code
version, the stage's own config and the *content* fingerprints of its inputs, so a rerun with
the same inputs finds the folder and reuses it, and any change upstream flows down as a new key.

Folders are written atomically: files go to a temp folder beside the final one, are fsynced, the
manifest is written last, then the folder is renamed into place. A folder without a valid
manifest is never trusted and is replaced by the next run that needs it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .config import StageConfig, canonical_json, hash_text
from .constants import (
    ARTIFACTS_SUBDIR,
    HASH_CHUNK_BYTES,
    MANIFEST_NAME,
    TMP_PREFIX,
    TRASH_PREFIX,
)
from .errors import ArtifactError

log = logging.getLogger(__name__)

TRACKED_PACKAGES = ("tomcap", "numpy", "polars", "pyarrow", "torch", "open_clip_torch", "faiss-cpu",
                    "transformers", "peft", "pycocoevalcap")
"""Library versions recorded in every manifest (those that are installed)."""


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


class ArtifactRef(BaseModel):
    """A small, picklable handle on an artifact: what tasks pass between each other."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    stage: str
    key: str
    path: str
    fingerprint: str
    cached: bool = False

    @property
    def dir(self) -> Path:
        return Path(self.path)

    def manifest(self) -> Manifest:
        return read_manifest(self.dir)

    def file(self, name: str) -> Path:
        """Path of one of the artifact's files; raises if the manifest does not list it."""
        m = self.manifest()
        if name not in m.files:
            raise ArtifactError(
                f"artifact has no file '{name}' (it has: {', '.join(sorted(m.files))})",
                path=self.dir,
                fix=f"pass an artifact of stage '{self.stage}' built by this version of tomcap",
            )
        return self.dir / name


@dataclass(frozen=True)
class StageSpec:
    """Identity of a stage: its name and a code version that enters every key.

    ``version`` is bumped by hand when a stage's output format or semantics change; the source
    hash of ``modules`` is added so that an edited stage never serves results of its old code.
    """

    name: str
    version: str
    modules: tuple[str, ...] = ()

    def code_version(self) -> str:
        return f"{self.version}+{_source_hash(self.modules)}" if self.modules else self.version


def _source_hash(modules: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in modules:
        mod = sys.modules.get(name) or __import__(name, fromlist=["_"])
        src = Path(mod.__file__)
        files = sorted(src.parent.rglob("*.py")) if src.name == "__init__.py" else [src]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()[:8]


def stage_key(spec: StageSpec, config: StageConfig, upstream: Mapping[str, str]) -> str:
    """Cache key: hash(stage name + code version + config fields + upstream content fingerprints)."""
    payload = {
        "stage": spec.name,
        "version": spec.code_version(),
        "config": config.key_dict(),
        "upstream": dict(sorted(upstream.items())),
    }
    return hash_text(canonical_json(payload))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def content_fingerprint(files: Mapping[str, FileEntry]) -> str:
    return hash_text(canonical_json({k: v.sha256 for k, v in sorted(files.items())}))


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


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
        if not f.is_file() or f.stat().st_size != entry.size:
            raise ArtifactError(f"file '{name}' listed in the manifest is missing or truncated", path=folder,
                                fix="delete the folder and rerun the stage")
    return manifest


def load_ref(folder: Path, stage: str | None = None) -> ArtifactRef:
    """Reference to an existing artifact folder (e.g. one a user passes on the command line)."""
    folder = Path(folder).resolve()
    m = read_manifest(folder)
    if stage is not None and m.stage != stage:
        raise ArtifactError(f"is a '{m.stage}' artifact, expected a '{stage}' artifact", path=folder,
                            fix=f"pass the folder of a '{stage}' artifact")
    return ArtifactRef(stage=m.stage, key=m.key, path=str(folder), fingerprint=m.fingerprint, cached=True)


@dataclass
class BuildOutput:
    """What a stage's build function reports besides its files."""

    rows: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ArtifactStore:
    """The artifacts of one data directory."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / ARTIFACTS_SUBDIR

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def path_for(self, stage: str, key: str) -> Path:
        return self.stage_dir(stage) / key

    def find(self, stage: str, key: str) -> ArtifactRef | None:
        """The valid artifact at (stage, key), or None if absent or not trustworthy."""
        folder = self.path_for(stage, key)
        if not folder.exists():
            return None
        try:
            m = read_manifest(folder)
        except ArtifactError as err:
            log.warning("ignoring untrusted artifact folder: %s", err)
            return None
        if m.key != key or m.stage != stage:
            log.warning("ignoring artifact folder %s: its manifest names %s/%s", folder, m.stage, m.key)
            return None
        return ArtifactRef(stage=stage, key=key, path=str(folder), fingerprint=m.fingerprint, cached=True)

    def list(self, stage: str) -> list[Manifest]:
        """Manifests of the valid artifacts of a stage, newest first."""
        out = []
        sdir = self.stage_dir(stage)
        if not sdir.is_dir():
            return out
        for folder in sdir.iterdir():
            if folder.name.startswith((TMP_PREFIX, TRASH_PREFIX)) or not folder.is_dir():
                continue
            with contextlib.suppress(ArtifactError):
                out.append(read_manifest(folder))
        return sorted(out, key=lambda m: m.created_at, reverse=True)

    def _clean_stale_temps(self, stage: str) -> None:
        """Remove temp/trash folders left by runs that were killed (their pid is gone)."""
        sdir = self.stage_dir(stage)
        for folder in sdir.glob(f"{TMP_PREFIX}*"):
            parts = folder.name.split("-")
            pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else -1
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(folder, ignore_errors=True)
        for folder in sdir.glob(f"{TRASH_PREFIX}*"):
            shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def _temp_dir(self, stage: str, key: str) -> Iterator[Path]:
        sdir = self.stage_dir(stage)
        sdir.mkdir(parents=True, exist_ok=True)
        self._clean_stale_temps(stage)
        tmp = sdir / f"{TMP_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def build(
        self,
        spec: StageSpec,
        config: StageConfig,
        upstream: Mapping[str, str],
        build_fn: Callable[[Path], BuildOutput],
        *,
        force: bool = False,
    ) -> ArtifactRef:
        """Return the cached artifact for this key, or build it atomically with ``build_fn(tmp_dir)``."""
        key = stage_key(spec, config, upstream)
        if not force and (hit := self.find(spec.name, key)) is not None:
            log.info("%s: cached artifact %s", spec.name, hit.path)
            return hit
        final = self.path_for(spec.name, key)
        t0 = time.perf_counter()
        with self._temp_dir(spec.name, key) as tmp:
            out = build_fn(tmp)
            files: dict[str, FileEntry] = {}
            for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                rel = f.relative_to(tmp).as_posix()
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
                files[rel] = FileEntry(size=f.stat().st_size, sha256=file_sha256(f))
            manifest = Manifest(
                stage=spec.name,
                stage_version=spec.code_version(),
                key=key,
                config=config.model_dump(mode="json"),
                config_fingerprint=config.fingerprint(),
                upstream=dict(upstream),
                fingerprint=content_fingerprint(files),
                files=files,
                rows=out.rows,
                versions=library_versions(),
                created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(),
                duration_s=round(time.perf_counter() - t0, 3),
                info=out.info,
            )
            mpath = tmp / MANIFEST_NAME
            with open(mpath, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True))
                fh.flush()
                os.fsync(fh.fileno())
            for d in {tmp, *(p.parent for p in tmp.rglob("*"))}:
                _fsync_dir(d)
            if final.exists():
                # Untrusted leftovers (or a forced rebuild): move aside first so the rename is atomic.
                trash = final.parent / f"{TRASH_PREFIX}{key}-{uuid.uuid4().hex[:6]}"
                final.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
            tmp.rename(final)
            _fsync_dir(final.parent)
        log.info("%s: wrote %s", spec.name, final)
        return ArtifactRef(stage=spec.name, key=key, path=str(final), fingerprint=manifest.fingerprint, cached=False)
