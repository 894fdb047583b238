"""User-facing errors: each names the file or field at fault and the fix."""
from __future__ import annotations

from pathlib import Path


class TomcapError(Exception):
    """An error a user can act on. The CLI prints it as one line and exits non-zero."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None, fix: str | None = None):
        self.path = Path(path) if path is not None else None
        self.fix = fix
        parts = [f"{self.path}: {message}" if self.path is not None else message]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__(" ".join(parts))


class ConfigError(TomcapError):
    """A config file or value is invalid."""


class InputDataError(TomcapError):
    """An input file is missing, malformed or of an unknown shape."""


class ArtifactError(TomcapError):
    """An artifact is missing, invalid or incompatible with the stage that reads it."""
