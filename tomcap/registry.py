"""Model versions and the promotion gate (no Prefect).

A *model version* is an immutable record of one trained model as it was evaluated: the checkpoint (train
artifact), the datastore (index artifact), the evaluation artifact with its metrics, the corpus fingerprint
and the evaluation set it was scored on. The record is itself an artifact of the store (stage
``model_version``: content-addressed, manifest-verified), and a version resolves only while every artifact
it names still has the fingerprint it was registered with, so ``v3`` means the same bytes forever or fails.

Names (``v1``, ``v2``, ...) and the aliases ``latest`` and ``champion`` are the only mutable state: one JSON
file under ``<data dir>/registry/``, replaced atomically (temp file, fsync, rename) while holding the store's
cross-process lock, so two concurrent promotions serialise and neither update is lost. Every change appends
to the state's log, and the champion history makes ``rollback`` a state change, not a rebuild.

``promotion_gate`` is the pure policy: the challenger becomes champion only if its metric on the same fixed
evaluation set is at least the champion's minus a tolerance.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec, fsync_dir, load_ref
from .config import StageConfig
from .errors import ArtifactError, ConfigError

SPEC = StageSpec(name="model_version", version="1", modules=("tomcap.registry",))
REGISTRY_SUBDIR = "registry"
STATE_FILE = "state.json"
RECORD_FILE = "version.json"
LATEST, CHAMPION = "latest", "champion"
ALIASES = (LATEST, CHAMPION)
VERSION_PREFIX = "v"
PROMOTED_EVENT, REJECTED_EVENT = "tomcap.model.promoted", "tomcap.model.rejected"
DEFAULT_METRIC = "CIDEr"
LOCK_FILE = ".lock"


# -- the pure policy ------------------------------------------------------------------------------------
class PromotionConfig(StageConfig):
    """When a challenger replaces the champion."""

    metric: str = Field(default=DEFAULT_METRIC, description="metric of the evaluation set that decides promotion")
    tolerance: float = Field(default=0.0, ge=0.0, description="promote if challenger >= champion - tolerance")
    higher_is_better: bool = Field(default=True, description="false for a loss-like metric")


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float | None
    champion: float | None
    against: str | None = None
    """Name of the champion version it was compared with (set by ``Registry.propose``)."""

    @property
    def event(self) -> str:
        return PROMOTED_EVENT if self.promote else REJECTED_EVENT


def _number(metrics: Mapping[str, Any], name: str) -> int | float | None:
    """The finite number ``metrics[name]`` as stored (a count stays an int), else None."""
    v = metrics.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def _metric(metrics: Mapping[str, Any], name: str) -> float | None:
    v = _number(metrics, name)
    return None if v is None else float(v)


def promotion_gate(challenger: Mapping[str, Any], champion: Mapping[str, Any] | None,
                   policy: PromotionConfig = PromotionConfig(), *, same_eval_set: bool = True) -> GateDecision:
    """Decide whether ``challenger``'s metrics earn it the champion alias over ``champion``'s (None: no champion).

    A challenger without the metric is a configuration error (the metric name is wrong for this evaluation);
    a champion without it, or scored on another evaluation set, cannot be compared, so the challenger is not
    promoted automatically (a person can still ``promote --force``)."""
    name = policy.metric
    c = _metric(challenger, name)
    if c is None:
        have = ", ".join(sorted(k for k in challenger if _metric(challenger, k) is not None)) or "none"
        raise ConfigError(f"the evaluation has no finite metric '{name}' (it has: {have})",
                          fix="set the promotion metric to one the evaluation reports")
    if champion is None:
        return GateDecision(True, "no champion yet", name, c, None)
    if not same_eval_set:
        return GateDecision(False, "champion was scored on another evaluation set", name, c, _metric(champion, name))
    b = _metric(champion, name)
    if b is None:
        return GateDecision(False, f"champion has no '{name}' to compare with", name, c, None)
    tol = policy.tolerance
    if policy.higher_is_better:
        ok, rel = c >= b - tol, (">=" if c >= b - tol else "<")
    else:
        ok, rel = c <= b + tol, ("<=" if c <= b + tol else ">")
    sign = "-" if policy.higher_is_better else "+"
    return GateDecision(ok, f"{name} {c:.6g} {rel} champion {b:.6g} {sign} tolerance {tol:g}", name, c, b)


def comparison_table(challenger: Mapping[str, Any], champion: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per metric either side reports: champion, challenger and their difference (full precision)."""
    names = list(dict.fromkeys([*(champion or {}), *challenger]))
    rows = []
    for n in names:
        a, b = _number(champion or {}, n), _number(challenger, n)
        if a is None and b is None:
            continue
        rows.append({"metric": n, "champion": a, "challenger": b,
                     "delta": None if a is None or b is None else b - a})
    return rows


# -- records and state ----------------------------------------------------------------------------------
class Pointer(BaseModel):
    """Where one artifact of a version is, and the fingerprint it had at registration."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    stage: str
    key: str
    path: str
    fingerprint: str

    @classmethod
    def of(cls, ref: ArtifactRef) -> Pointer:
        return cls(stage=ref.stage, key=ref.key, path=str(Path(ref.path).resolve()), fingerprint=ref.fingerprint)


class VersionRecord(StageConfig):
    """The content of a model version (its artifact config, so equal content is the same artifact)."""

    checkpoint: Pointer
    datastore: Pointer
    evaluation: Pointer
    metrics: dict[str, Any]
    corpus_fingerprint: str | None
    eval_set: str | None


class ModelVersion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    key: str
    created_at: str
    record: VersionRecord

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.metrics


class RegistryState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    revision: int = 0
    versions: dict[str, str] = {}
    """name -> model_version artifact key, in registration order."""
    aliases: dict[str, str] = {}
    champions: list[str] = []
    """Champion history, newest last (rollback pops it)."""
    log: list[dict[str, Any]] = []


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Registry:
    """The model versions and aliases of one data dir."""

    def __init__(self, data_dir: Path | str):
        self.store = ArtifactStore(data_dir)
        self.dir = self.store.data_dir / REGISTRY_SUBDIR
        self.state_path = self.dir / STATE_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive, cross-process lock of the registry state (the kernel drops it if the holder dies).
        The lock file is never removed, so every process locks the same inode."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # state I/O: reads need no lock (the file is replaced whole); changes hold the store's lock
    def state(self) -> RegistryState:
        if not self.state_path.is_file():
            return RegistryState()
        try:
            return RegistryState.model_validate_json(self.state_path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ArtifactError(f"registry state is not valid ({err.__class__.__name__})", path=self.state_path,
                                fix="restore it from a backup; model version artifacts are kept under "
                                    f"artifacts/{SPEC.name}/") from None

    def _write(self, state: RegistryState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{STATE_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(state.model_dump_json(indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        fsync_dir(self.dir)

    def _change(self, state: RegistryState, action: str, version: str | None, **detail: Any) -> RegistryState:
        state.revision += 1
        state.log.append({"revision": state.revision, "at": _now(), "action": action, "version": version, **detail})
        self._write(state)
        return state

    # reading versions
    def versions(self) -> list[ModelVersion]:
        st = self.state()
        return [self._load(name, key) for name, key in st.versions.items()]

    def _load(self, name: str, key: str) -> ModelVersion:
        folder = self.store.path_for(SPEC.name, key)
        try:
            ref = load_ref(folder, stage=SPEC.name)
        except ArtifactError as err:
            raise ArtifactError(f"model version {name} is missing or damaged ({err})", path=folder,
                                fix="register the model again (tomcap models register) or roll back") from None
        m = ref.manifest()
        return ModelVersion(name=name, key=key, created_at=m.created_at, record=VersionRecord.model_validate(m.config))

    def _name(self, st: RegistryState, name_or_alias: str) -> str:
        name = st.aliases.get(name_or_alias, name_or_alias)
        if name not in st.versions:
            known = ", ".join([*(a for a in ALIASES if a in st.aliases), *st.versions]) or "none registered yet"
            raise ConfigError(f"no model version '{name_or_alias}' in {self.dir} (known: {known})",
                              fix="pass champion, latest or a version name from `tomcap models list`")
        return name

    def get(self, name_or_alias: str) -> ModelVersion:
        """A version by name (``v3``) or alias (``champion``, ``latest``)."""
        st = self.state()
        name = self._name(st, name_or_alias)
        return self._load(name, st.versions[name])

    def resolve(self, name_or_alias: str) -> dict[str, ArtifactRef]:
        """The checkpoint, datastore and evaluation refs of a version, each checked against its registered
        fingerprint (a rebuilt or changed artifact is refused, not silently used)."""
        v = self.get(name_or_alias)
        out = {}
        for role, p in (("checkpoint", v.record.checkpoint), ("datastore", v.record.datastore),
                        ("evaluation", v.record.evaluation)):
            ref = load_ref(self.store.path_for(p.stage, p.key), stage=p.stage)  # survives a moved data dir
            if ref.fingerprint != p.fingerprint:
                raise ArtifactError(f"{role} of model version {v.name} changed since registration "
                                    f"({p.fingerprint} -> {ref.fingerprint})", path=p.path,
                                    fix="register the current artifacts as a new version")
            out[role] = ref
        return out

    def aliases_of(self, name: str) -> list[str]:
        return [a for a, n in self.state().aliases.items() if n == name]

    # changes
    def register(self, *, checkpoint: ArtifactRef, datastore: ArtifactRef, evaluation: ArtifactRef,
                 corpus_fingerprint: str | None = None, eval_set: str | None = None) -> ModelVersion:
        """Record a trained model as a new version (the same artifacts again return their existing version)
        and point ``latest`` at it. Corpus fingerprint and evaluation set default to what the checkpoint's
        and the evaluation's manifests name."""
        for ref, stage in ((checkpoint, "train"), (datastore, "index"), (evaluation, "evaluate")):
            if ref.stage != stage:
                raise ConfigError(f"expected a '{stage}' artifact, got '{ref.stage}'", path=ref.path,
                                  fix=f"pass the {stage} artifact folder")
        metrics_file = evaluation.file("metrics.json")
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        ev_up = evaluation.manifest().upstream
        record = VersionRecord(
            checkpoint=Pointer.of(checkpoint), datastore=Pointer.of(datastore), evaluation=Pointer.of(evaluation),
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None},
            corpus_fingerprint=corpus_fingerprint or checkpoint.manifest().upstream.get("corpus"),
            eval_set=eval_set or ev_up.get("refs"))
        upstream = {"train": checkpoint.fingerprint, "index": datastore.fingerprint, "evaluate": evaluation.fingerprint}

        def build(tmp: Path) -> BuildOutput:
            (tmp / RECORD_FILE).write_text(record.model_dump_json(indent=1), encoding="utf-8")
            return BuildOutput(info={"metrics": record.metrics})

        with self._locked():
            ref = self.store.build(SPEC, record, upstream, build)
            st = self.state()
            existing = [n for n, k in st.versions.items() if k == ref.key]
            if existing:
                return self._load(existing[0], ref.key)
            name = f"{VERSION_PREFIX}{len(st.versions) + 1}"
            st.versions[name] = ref.key
            st.aliases[LATEST] = name
            self._change(st, "register", name)
        return self._load(name, ref.key)

    def propose(self, name_or_alias: str, policy: PromotionConfig = PromotionConfig()) -> GateDecision:
        """Run the gate for a version against the current champion and promote it if it passes, as one
        locked step (so two concurrent proposals each compare against the champion the other left)."""
        with self._locked():
            st = self.state()
            name = self._name(st, name_or_alias)
            challenger = self._load(name, st.versions[name])
            champ_name = st.aliases.get(CHAMPION)
            if champ_name == name:
                value = _metric(challenger.metrics, policy.metric)
                return GateDecision(False, f"{name} is already champion", policy.metric, value, value, name)
            champion = self._load(champ_name, st.versions[champ_name]) if champ_name else None
            same = champion is None or champion.record.eval_set == challenger.record.eval_set
            decision = replace(promotion_gate(challenger.metrics, champion.metrics if champion else None, policy,
                                              same_eval_set=same), against=champ_name)
            if decision.promote:
                st.aliases[CHAMPION] = name
                st.champions.append(name)
            self._change(st, "promote" if decision.promote else "reject", name, champion=champ_name,
                         reason=decision.reason)
        return decision

    def promote(self, name_or_alias: str) -> ModelVersion:
        """Make a version champion without the gate (a person's decision; logged as such)."""
        with self._locked():
            st = self.state()
            name = self._name(st, name_or_alias)
            previous = st.aliases.get(CHAMPION)
            if previous != name:
                st.aliases[CHAMPION] = name
                st.champions.append(name)
                self._change(st, "promote", name, champion=previous, reason="forced")
        return self.get(name)

    def rollback(self) -> ModelVersion:
        """Give the champion alias back to the previous champion."""
        with self._locked():
            st = self.state()
            if len(st.champions) < 2:
                raise ConfigError(f"no earlier champion to roll back to in {self.dir}",
                                  fix="promote a version instead: tomcap models promote VERSION")
            dropped = st.champions.pop()
            st.aliases[CHAMPION] = st.champions[-1]
            self._change(st, "rollback", st.champions[-1], replaced=dropped)
            name = st.champions[-1]
        return self.get(name)
