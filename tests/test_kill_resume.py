"""Kill -9 in the middle of a stage of `tomcap pipeline`, rerun: it completes, and the final artifacts
are byte-identical to an uninterrupted run's (embedding and training).

Each run is a real subprocess with its own PREFECT_HOME and ephemeral Prefect server; the kill goes
to the whole process group, as an OOM killer or a preempted node would.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tomcap.artifacts import TMP_PREFIX

from flow_helpers import pipeline_yaml  # tests/ is on sys.path (pytest rootdir conftest)

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 600
POLL_S = 0.05


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PYTHONPATH=str(REPO_ROOT))
    return env


def _cmd(config: Path, data: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from tomcap.cli.main import main; sys.exit(main(sys.argv[1:]))",
            "pipeline", "--config", str(config), "--data-dir", str(data)]


def _run(config: Path, data: Path, home: Path) -> None:
    out = subprocess.run(_cmd(config, data), env=_env(home), cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_S)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def _run_and_kill(config: Path, data: Path, home: Path, in_stage) -> None:
    """Start the pipeline, SIGKILL its process group as soon as ``in_stage(data)`` holds."""
    proc = subprocess.Popen(_cmd(config, data), env=_env(home), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not in_stage(data):
            assert proc.poll() is None, "the pipeline ended before the stage could be interrupted"
            assert time.monotonic() < deadline, "the stage never started"
            time.sleep(POLL_S)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _final(data: Path, stage: str) -> Path:
    folders = [p for p in (data / "artifacts" / stage).iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1, folders
    return folders[0]


def _embedding_in_progress(data: Path) -> bool:
    d = data / "artifacts" / "embed"
    return d.is_dir() and any(p.name.startswith(TMP_PREFIX) for p in d.iterdir())


def _training_checkpointed(data: Path) -> bool:
    return any((data / "work" / "train").glob("*/last/checkpoint.json"))


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _same_fingerprint(a: Path, b: Path) -> None:
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["fingerprint"] == mb["fingerprint"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its config and data dir."""
    root = tmp_path_factory.mktemp("kill")
    config = pipeline_yaml(root, n_scenes=1500, train_steps=300)
    _run(config, root / "ref-data", root / "ref-home")
    return config, root / "ref-data"


def _embed_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")


def test_kill_during_embedding_then_rerun_matches_uninterrupted(reference, tmp_path):
    config, ref = reference
    data = tmp_path / "data"
    _run_and_kill(config, data, tmp_path / "home1", _embedding_in_progress)
    assert not (data / "artifacts" / "train").exists()
    assert not (data / "artifacts" / "embed").exists() or not [
        p for p in (data / "artifacts" / "embed").iterdir() if not p.name.startswith(".")]  # no trusted half artifact
    _run(config, data, tmp_path / "home2")
    got, want = _final(data, "embed"), _final(ref, "embed")
    assert got.name == want.name
    _same_files(got, want, _embed_files(want))
    _same_fingerprint(got, want)
    assert not any(p.name.startswith(TMP_PREFIX) for p in got.parent.iterdir())  # the killed run's temp is gone
    _same_files(_final(data, "train"), _final(ref, "train"), ["adaptor.safetensors"])


def test_kill_during_training_resumes_to_identical_weights(reference, tmp_path):
    config, ref = reference
    data = tmp_path / "data"
    _run_and_kill(config, data, tmp_path / "home1", _training_checkpointed)
    assert not [p for p in (data / "artifacts" / "train").iterdir() if not p.name.startswith(".")]  # only a temp
    _run(config, data, tmp_path / "home2")
    got, want = _final(data, "train"), _final(ref, "train")
    assert got.name == want.name
    _same_files(got, want, ["adaptor.safetensors", "checkpoint.json", "train_log.json"])
    _same_fingerprint(got, want)
    info = json.loads((got / "manifest.json").read_text())["info"]
    assert info["resumed_from"] > 0  # it did continue from the killed run's checkpoint
    assert not (data / "work" / "train").exists() or not any((data / "work" / "train").iterdir())
    # Identical upstream content -> the same downstream keys: nothing after training is recomputed differently.
    assert _final(data, "evaluate").name == _final(ref, "evaluate").name
    _same_files(_final(data, "evaluate"), _final(ref, "evaluate"), ["metrics.json"])
