"""Content-addressed artifact store.

Every stage output is a folder ``<data_dir>/artifacts/<stage>/<key>/`` holding its files and a
``manifest.json`` that describes them. The key is a hash of the stage name, the stage's code
version, the stage's own config and the *content* fingerprints of its inputs, so a rerun with
the same inputs finds the folder and reuses it, and any change upstream flows down as a new key.

Folders are written atomically: files go to a temp folder beside the final one, are fsynced, the
manifest is written last, then the folder is renamed into place. A folder without a valid
manifest is never trusted and is replaced by the next run that needs it.

Integrity (``tomcap/manifest.py``): every read of a manifest checks the files' sizes; the first time a
process uses an artifact (reuse, a folder passed by the user, or any read through ``ArtifactRef.dir``/
``file``) it also checks every file's sha256 against the manifest. A file that differs is a
:class:`DamagedArtifactError` naming it and the rebuild (``--force`` on that stage).

Concurrency: a build holds an exclusive ``flock`` on ``.locks/<stage>.<key>.lock``, so two
identical runs serialise per artifact key and the second reuses what the first wrote.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
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
from .constants import ARTIFACTS_SUBDIR, MANIFEST_NAME, TMP_PREFIX, TRASH_PREFIX
from .errors import ArtifactError, ConfigError
from .manifest import (DamagedArtifactError, FileEntry, Manifest, content_fingerprint, file_sha256, input_sha256,
                       read_manifest, rebuild_fix, remember_verified, verify_artifact)

__all__ = ["ArtifactRef", "ArtifactStore", "BuildOutput", "DamagedArtifactError", "FileEntry", "Manifest",
           "StageSpec", "content_fingerprint", "file_sha256", "fsync_dir", "input_sha256", "library_versions",
           "load_ref", "read_manifest", "rebuild_fix", "stage_key", "verify_artifact"]

log = logging.getLogger(__name__)

TRACKED_PACKAGES = ("tomcap", "numpy", "polars", "pyarrow", "torch", "open_clip_torch", "faiss-cpu",
                    "transformers", "peft", "pycocoevalcap")
"""Library versions recorded in every manifest (those that are installed)."""
LOCKS_SUBDIR, LOCK_SUFFIX = ".locks", ".lock"
"""Per-key lock files ``artifacts/.locks/<stage>.<key>.lock`` (removed by the holder; a killed one's are harmless)."""


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
        """The artifact's folder, its files checked against the manifest (hashes once per process)."""
        folder = Path(self.path)
        verify_artifact(folder)
        return folder

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


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def load_ref(folder: Path, stage: str | None = None) -> ArtifactRef:
    """Reference to an existing artifact folder (e.g. one a user passes on the command line)."""
    folder = Path(folder).resolve()
    m = verify_artifact(folder)
    if stage is not None and m.stage != stage:
        raise ArtifactError(f"is a '{m.stage}' artifact, expected a '{stage}' artifact", path=folder,
                            fix=f"pass the folder of a '{stage}' artifact")
    return ArtifactRef(stage=m.stage, key=m.key, path=str(folder), fingerprint=m.fingerprint, cached=True)


@dataclass
class BuildOutput:
    """What a stage's build function reports besides its files."""

    rows: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (the directory entry itself is flushed)."""
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
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ConfigError("the data dir is a file, not a folder", path=self.data_dir,
                              fix="pass --data-dir (or set data_dir in the config) to a folder")

    def _mkdir(self, folder: Path) -> Path:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the data dir folder {folder} ({err.strerror or err})",
                              path=self.data_dir,
                              fix="pass --data-dir (or set data_dir in the config) to a writable folder") from None
        return folder

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
            m = verify_artifact(folder)
        except DamagedArtifactError:
            raise  # complete but changed since: say so (and how to rebuild) instead of quietly rebuilding
        except ArtifactError as err:
            log.warning("ignoring untrusted artifact folder: %s", err)
            return None
        if m.key != key or m.stage != stage:
            log.warning("ignoring artifact folder %s: its manifest names %s/%s", folder, m.stage, m.key)
            return None
        return ArtifactRef(stage=stage, key=key, path=str(folder), fingerprint=m.fingerprint, cached=True)

    def folders(self, stage: str) -> list[Path]:
        """Artifact folders of a stage (temp, trash and lock entries left out)."""
        sdir = self.stage_dir(stage)
        if not sdir.is_dir():
            return []
        return sorted(f for f in sdir.iterdir() if f.is_dir() and not f.name.startswith("."))

    def stages(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))

    def scan(self, stage: str) -> tuple[list[Manifest], list[ArtifactError]]:
        """(manifests of the artifacts whose files have the listed sizes, newest first; why the others are not)."""
        out, problems = [], []
        for folder in self.folders(stage):
            try:
                out.append(read_manifest(folder))
            except ArtifactError as err:
                problems.append(err)
        return sorted(out, key=lambda m: m.created_at, reverse=True), problems

    def list(self, stage: str) -> list[Manifest]:
        """Manifests of the valid artifacts of a stage, newest first."""
        return self.scan(stage)[0]

    def newest(self, stage: str, accept: Callable[[Manifest], bool], *, fix: str) -> ArtifactRef:
        """The newest artifact of ``stage`` that ``accept``s and passes verification.

        Damaged ones are skipped with a warning naming them; when none is left, the error lists them.
        """
        manifests, problems = self.scan(stage)
        for m in manifests:
            if not accept(m):
                continue
            try:
                ref = load_ref(self.path_for(stage, m.key), stage)
            except ArtifactError as err:
                log.warning("skipping damaged '%s' artifact: %s", stage, err)
                problems.append(err)
                continue
            if problems:
                log.warning("using '%s' artifact %s; skipped %d damaged newer or unreadable one(s): %s",
                            stage, ref.path, len(problems), "; ".join(str(e) for e in problems))
            return ref
        skipped = (f"; skipped {len(problems)} damaged artifact(s): " + " | ".join(str(e) for e in problems)
                   if problems else "")
        raise ArtifactError(f"no suitable '{stage}' artifact{skipped}", path=self.stage_dir(stage), fix=fix)

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
        sdir = self._mkdir(self.stage_dir(stage))
        self._clean_stale_temps(stage)
        tmp = sdir / f"{TMP_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @contextlib.contextmanager
    def key_lock(self, stage: str, key: str) -> Iterator[None]:
        """Exclusive lock of one artifact key across processes and threads (released when a holder dies)."""
        path = self._mkdir(self.root / LOCKS_SUBDIR) / f"{stage}.{key}{LOCK_SUFFIX}"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("%s: another run is building artifact %s; waiting for it to reuse its result", stage, key)
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)  # the holder removed this lock file as it finished: lock the new one
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # under the lock; waiters notice the unlinked inode and retry
            os.close(fd)

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
        with self.key_lock(spec.name, key):
            if not force and (hit := self.find(spec.name, key)) is not None:
                log.info("%s: artifact %s was built by a concurrent run; reusing it", spec.name, hit.path)
                return hit
            return self._build_locked(spec, config, upstream, build_fn, key)

    def _build_locked(self, spec: StageSpec, config: StageConfig, upstream: Mapping[str, str],
                      build_fn: Callable[[Path], BuildOutput], key: str) -> ArtifactRef:
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
                fsync_dir(d)
            if final.exists():
                # Untrusted leftovers (or a forced rebuild): move aside first so the rename is atomic.
                trash = final.parent / f"{TRASH_PREFIX}{key}-{uuid.uuid4().hex[:6]}"
                final.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
            tmp.rename(final)
            fsync_dir(final.parent)
        remember_verified(final, manifest)  # hashed just now, while writing
        log.info("%s: wrote %s", spec.name, final)
        return ArtifactRef(stage=spec.name, key=key, path=str(final), fingerprint=manifest.fingerprint, cached=False)
