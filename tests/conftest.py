"""Test isolation: Prefect gets a throw-away home and no telemetry *before* anything imports it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="tomcap-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CAPTIONS = REPO_ROOT.parent / "shared" / "data" / "captions"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_captions() -> Path:
    """The real caption files beside the checkout (../shared/data/captions); skip if absent."""
    if not SHARED_CAPTIONS.is_dir():
        pytest.skip("../shared/data/captions is not beside this checkout")
    return SHARED_CAPTIONS


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (temporary database and server) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
