"""Config base class and YAML loading.

Every stage has one frozen pydantic v2 config. Configs are plain data, so Prefect can take them
as flow parameters, and each has a ``fingerprint()`` over its canonical JSON that enters the
stage's cache key: a field used only by stage k changes only stage k's key (and, through the
upstream fingerprints, its downstream).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .constants import FINGERPRINT_CHARS
from .errors import ConfigError

C = TypeVar("C", bound="StageConfig")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for every hash in the project."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def hash_text(text: str, chars: int = FINGERPRINT_CHARS) -> str:
    """Short sha256 hex digest of a string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


class StageConfig(BaseModel):
    """Base of every config: frozen, unknown keys rejected, fingerprintable."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False):  # type: ignore[override]
        """As pydantic's (which does not validate ``update``), but a non-finite number is refused: the command
        line's overrides arrive this way, and ``--guidance nan`` must not reach the decoder."""
        for name, value in (update or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{type(self).__name__}.{name} = {value} is not a finite number",
                                  fix=f"pass a finite value for '{name}'")
        return super().model_copy(update=update, deep=deep)

    def key_dict(self) -> dict[str, Any]:
        """The fields that enter cache keys (all of them unless a stage says otherwise)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """Hash of the canonical JSON of :meth:`key_dict` (defaults included)."""
        return hash_text(canonical_json(self.key_dict()))


def format_validation_error(err: ValidationError, source: str) -> str:
    """Turn pydantic's error list into lines that name the field, the value and the fix."""
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            fix = "remove or rename it (see the config reference in README.md for valid keys)"
            lines.append(f"{source}: unknown key '{field}'. Fix: {fix}.")
            continue
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        msg = e["msg"].removeprefix("Value error, ")
        fix = "" if "fix:" in msg.lower() else f". Fix: set '{field}' to a valid value (README.md lists the keys)"
        lines.append(f"{source}: field '{field}' = {shown} is invalid: {msg}{fix}")
    return "\n".join(lines)


def validate_config(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Build ``cls`` from a dict, raising :class:`ConfigError` with readable messages."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path=path, fix="pass an existing YAML file with --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (byte {err.start}: {err.reason})", path=path,
                          fix="save the config as UTF-8 (it must be a YAML text file)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML ({err})", path=path, fix="correct the YAML syntax") from None
    except OSError as err:
        raise ConfigError(f"cannot read the config file ({err.strerror or err})", path=path,
                          fix="pass a readable YAML file with --config") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of config sections, got {type(data).__name__}",
            path=path,
            fix="write the config as 'key: value' pairs",
        )
    return data


def load_config(cls: type[C], path: Path) -> C:
    """Load a YAML config file into ``cls``."""
    return validate_config(cls, read_yaml_mapping(path), source=str(path))
