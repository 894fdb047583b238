"""Prefect settings of the orchestrating commands."""
from __future__ import annotations

import os

PREFECT_STARTUP_TIMEOUT_S = "180"
"""A busy 2-core machine can need well over Prefect's default to start the ephemeral server."""


def prefect_defaults() -> None:
    """Offline, telemetry-free Prefect with a patient ephemeral-server start (user settings win)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", PREFECT_STARTUP_TIMEOUT_S)
