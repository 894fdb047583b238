"""prefect.yaml against a real local Prefect server: server, work pool, deploy, worker, run --watch.

Everything runs on 127.0.0.1 on a free port with a temporary PREFECT_HOME; the test stops only the
processes it started.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from flow_helpers import pipeline_yaml  # tests/ is on sys.path (pytest rootdir conftest)

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
SERVER_START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300
POOL = "tomcap-process"  # the pool prefect.yaml names

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError("prefect server did not become healthy")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def prefect_server(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "TOMCAP_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(api, server)
        yield env
    finally:
        _stop(server)
        log.close()


def _cli(env: dict, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([PREFECT, *args], env={**env, "COLUMNS": "250"}, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_deploy_and_run_through_a_process_worker(prefect_server, tmp_path):
    env = prefect_server
    _cli(env, "work-pool", "create", POOL, "--type", "process")
    _cli(env, "--no-prompt", "deploy", "--all")
    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", POOL, "--limit", "1"], env=env, cwd=REPO,
                              stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    tiny = pipeline_yaml(tmp_path / "tiny", n_scenes=40, train_steps=3)
    try:
        out = _cli(env, "deployment", "run", "tomcap-corpus/corpus", "--watch", "--watch-timeout",
                   str(RUN_TIMEOUT_S), timeout=RUN_TIMEOUT_S + 30)
        # The scheduled/event-triggered deployment, run by hand on the tiny pipeline config.
        retrain = _cli(env, "deployment", "run", "tomcap-retrain/retrain", "-p", f"config_file={tiny}", "--watch",
                       "--watch-timeout", str(RUN_TIMEOUT_S), timeout=RUN_TIMEOUT_S + 30)
    finally:
        _stop(worker)
        worker_log.close()
    assert "Completed" in out, out + (tmp_path / "worker.log").read_text()
    manifests = list((tmp_path / "data" / "artifacts" / "corpus").glob("*/manifest.json"))
    # corpus + retrain
    assert len(manifests) == 2 and all(json.loads(m.read_text())["rows"]["rows_out"] > 0 for m in manifests)
    assert "Completed" in retrain, retrain + (tmp_path / "worker.log").read_text()
    metrics = list((tmp_path / "data" / "artifacts" / "evaluate").glob("*/metrics.json"))
    assert len(metrics) == 1 and "CIDEr" in json.loads(metrics[0].read_text())
    listed = _cli(env, "artifact", "ls")
    assert all(k in listed for k in ("tomcap-corpus-stats", "tomcap-gap-report", "tomcap-training-curve",
                                     "tomcap-eval-metrics")), listed
