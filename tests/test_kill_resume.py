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
STALL_S = 600
"""A run fails only when nothing under its data dir or Prefect home has changed for this long: a loaded 2-core
machine makes the pipeline slow (so no fixed wall-clock limit), a hung one makes it silent."""
POLL_S = 0.05
ACTIVITY_EVERY_S = 2.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PYTHONPATH=str(REPO_ROOT))
    return env


def _cmd(config: Path, data: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from tomcap_cli.main import main; sys.exit(main(sys.argv[1:]))",
            "pipeline", "--config", str(config), "--data-dir", str(data)]


def _activity(roots: list[Path]) -> tuple[int, int, int]:
    """(files, total size, newest mtime) under ``roots``: changes while the pipeline makes progress."""
    count = size = newest = 0
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except OSError:  # removed while walking (temp folders come and go)
                    continue
                count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return count, size, newest


def _watch(proc: subprocess.Popen, roots: list[Path], done, log: Path) -> None:
    """Wait until ``done()`` holds, failing if the process exits first or nothing under ``roots`` changes for
    STALL_S (event-driven: progress, not wall-clock time, decides)."""
    last, last_change, last_check = None, time.monotonic(), 0.0
    while not done():
        if proc.poll() is not None:
            return
        now = time.monotonic()
        if now - last_check >= ACTIVITY_EVERY_S:
            last_check = now
            state = _activity(roots)
            if state != last:
                last, last_change = state, now
            elif now - last_change > STALL_S:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                pytest.fail(f"no progress for {STALL_S} s under {roots}; log tail:\n{log.read_text()[-3000:]}")
        time.sleep(POLL_S)


def _start(config: Path, data: Path, home: Path) -> tuple[subprocess.Popen, Path]:
    home.mkdir(parents=True, exist_ok=True)
    log = home / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_cmd(config, data), env=_env(home), cwd=REPO_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def _run(config: Path, data: Path, home: Path) -> None:
    proc, log = _start(config, data, home)
    try:
        _watch(proc, [data, home], lambda: proc.poll() is not None, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, log.read_text()[-6000:]


def _run_and_kill(config: Path, data: Path, home: Path, in_stage) -> None:
    """Start the pipeline, SIGKILL its process group as soon as ``in_stage(data)`` holds."""
    proc, log = _start(config, data, home)
    try:
        _watch(proc, [data, home], lambda: in_stage(data), log)
        assert proc.poll() is None, ("the pipeline ended before the stage could be interrupted: "
                                     + log.read_text()[-3000:])
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
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != "manifest.json")


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
