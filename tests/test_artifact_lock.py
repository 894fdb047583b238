"""Two identical runs at once: the second waits on the artifact key's lock and reuses the first's artifact.

Event-driven (no sleeps that a busy machine could outrun): the first build blocks until the test has seen
the second process report that it is waiting, then is released.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tomcap.artifacts import LOCKS_SUBDIR, ArtifactStore

REPO = Path(__file__).resolve().parents[1]
WAIT_LIMIT_S = 300
"""Only a hang reaches this (each step below is a file appearing or a line being written)."""

SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec
    from tomcap.config import StageConfig

    class Cfg(StageConfig):
        n: int = 1

    data, log, started, release = sys.argv[1:5]

    def build(tmp):
        with open(log, "a") as f:
            f.write("build\\n")
        Path(started).touch()
        while not Path(release).exists():
            time.sleep(0.02)
        (tmp / "out.txt").write_text("content")
        return BuildOutput(rows={"n": 1})

    t0 = time.perf_counter()
    ref = ArtifactStore(data).build(StageSpec("demo", "1"), Cfg(), {}, build)
    print(json.dumps({"cached": ref.cached, "key": ref.key, "seconds": time.perf_counter() - t0}))
""")


def _wait_for(cond, what: str, procs) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not cond():
        for p in procs:
            assert p.poll() is None, f"a run ended while waiting for {what}: {p.communicate()}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def _start(tmp: Path, name: str) -> tuple[subprocess.Popen, Path]:
    err = tmp / f"{name}.err"
    args = [sys.executable, "-c", SCRIPT, str(tmp / "data"), str(tmp / "builds.log"), str(tmp / f"{name}.started"),
            str(tmp / "release")]
    with open(err, "w") as f:
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=f, text=True)
    return proc, err


def test_second_identical_run_waits_and_reuses(tmp_path):
    first, _ = _start(tmp_path, "first")
    procs = [first]
    try:
        _wait_for((tmp_path / "first.started").exists, "the first build start", procs)
        second, second_err = _start(tmp_path, "second")
        procs.append(second)
        _wait_for(lambda: "waiting for it" in second_err.read_text(), "the second run wait on the lock", procs)
        assert not (tmp_path / "second.started").exists()
        (tmp_path / "release").touch()
        out_first, _ = first.communicate(timeout=WAIT_LIMIT_S)
        out_second, _ = second.communicate(timeout=WAIT_LIMIT_S)
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
    a, b = json.loads(out_first), json.loads(out_second)
    assert first.returncode == 0 and second.returncode == 0
    assert (tmp_path / "builds.log").read_text() == "build\n"  # the work was done once
    assert a["cached"] is False and b["cached"] is True and a["key"] == b["key"]
    store = ArtifactStore(tmp_path / "data")
    assert [f.name for f in store.folders("demo")] == [a["key"]]
    assert not list((store.root / LOCKS_SUBDIR).iterdir())  # the lock file went with its holder


def test_a_killed_holder_releases_the_lock(tmp_path):
    first, _ = _start(tmp_path, "first")
    try:
        _wait_for((tmp_path / "first.started").exists, "the first build start", [first])
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
    (tmp_path / "release").touch()
    second, _ = _start(tmp_path, "second")
    out, _ = second.communicate(timeout=WAIT_LIMIT_S)
    assert second.returncode == 0 and json.loads(out)["cached"] is False  # built anew, not blocked
    assert (tmp_path / "builds.log").read_text() == "build\nbuild\n"
