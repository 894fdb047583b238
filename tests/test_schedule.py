"""The 'retrain' deployment's schedule and event trigger against a real local Prefect server.

`tests/test_deployments.py` starts deployments by hand, which worked while the server-side scheduler
created no runs at all (SQLAlchemy 2.1.x under Prefect 3.8.8: "Can't evaluate bulk DML statement").
Here the server runs its scheduler on a short loop, `prefect deploy --all` registers prefect.yaml as a
user would, and the test waits for the scheduler's runs through the API. The event trigger is checked
with the emitter `tomcap corpus --emit-event` and `tomcap watch` use. Nothing here needs a worker:
a created run in the pool's queue is what the scheduler and the automation are responsible for.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from test_deployments import POOL, REPO, _cli, prefect_server  # noqa: F401  (fixture reused)

from tomcap.constants import CORPUS_UPDATED_EVENT

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

SCHEDULER_LOOP_S = 2
WAIT_S = 90
DEPLOYMENT = "tomcap-retrain/retrain"


@pytest.fixture
def scheduler_env(monkeypatch):
    """Scheduler and trigger services on, polling every few seconds (read by the server fixture's env)."""
    for name, value in {"PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true",
                        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": str(SCHEDULER_LOOP_S),
                        "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": str(SCHEDULER_LOOP_S),
                        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def server(scheduler_env, request):
    """The real server of tests/test_deployments.py, started after ``scheduler_env`` set its env."""
    return request.getfixturevalue("prefect_server")


def _api(env: dict, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(env["PREFECT_API_URL"] + path, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def _runs(env: dict, deployment_id: str) -> list[dict]:
    return _api(env, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 100})


def _wait_for(fn, what: str, log) -> list[dict]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"no {what} within {WAIT_S} s; server log tail:\n{log.read_text()[-4000:]}")


def _cron_schedule() -> dict:
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    [retrain] = [d for d in deployments if d["name"] == "retrain"]
    [schedule] = retrain["schedules"]
    return schedule


def test_schedule_creates_runs_and_event_trigger_starts_one(server, tmp_path):
    env = server
    settings = _api(env, "/admin/settings")["server"]["services"]["scheduler"]
    assert settings["enabled"] and settings["loop_seconds"] == SCHEDULER_LOOP_S  # the server read our env
    _cli(env, "work-pool", "create", POOL, "--type", "process")
    _cli(env, "--no-prompt", "deploy", "--all")
    deployment = _api(env, f"/deployments/name/{DEPLOYMENT}")
    expected = _cron_schedule()
    [sched] = deployment["schedules"]
    assert sched["active"] and sched["schedule"]["cron"] == expected["cron"]

    log = tmp_path / "server.log"
    scheduled = _wait_for(lambda: [r for r in _runs(env, deployment["id"]) if r["state_type"] == "SCHEDULED"],
                          "scheduled run of the retrain cron", log)
    print(f"scheduled runs created by the server's scheduler: {len(scheduled)}")
    starts = sorted(dt.datetime.fromisoformat(r["expected_start_time"]) for r in scheduled)
    minute, hour = (int(x) for x in expected["cron"].split()[:2])
    assert all((s.astimezone(dt.timezone.utc).hour, s.minute) == (hour, minute) for s in starts), starts
    assert starts[0] > dt.datetime.now(dt.timezone.utc)
    assert all(r["parameters"] == deployment["parameters"] for r in scheduled)
    # What a worker polling the pool receives: the scheduled runs, not only rows in a table.
    queued = _api(env, f"/work_pools/{POOL}/get_scheduled_flow_runs",
                  {"scheduled_before": (starts[-1] + dt.timedelta(minutes=1)).isoformat()})
    assert {r["flow_run"]["id"] for r in queued} >= {r["id"] for r in scheduled}

    automations = _api(env, "/automations/filter", {})
    assert any(CORPUS_UPDATED_EVENT in json.dumps(a["trigger"]) for a in automations), automations
    corpus = tmp_path / "landed.jsonl"
    corpus.write_text('{"caption": "a red circle above a blue square"}\n')
    emit = ("import sys; from pathlib import Path; from tasks.events import emit_corpus_updated; "
            "emit_corpus_updated(Path(sys.argv[1]), 'f' * 64)")
    subprocess.run([sys.executable, "-c", emit, str(corpus)], env=env, cwd=REPO, check=True, timeout=120)
    triggered = _wait_for(lambda: [r for r in _runs(env, deployment["id"])
                                   if r["parameters"].get("corpus_path") == str(corpus.resolve())],
                          "run started by the tomcap.corpus.updated trigger", log)
    assert triggered[0]["parameters"]["config_file"] == deployment["parameters"]["config_file"]
    assert triggered[0]["state_type"] in {"SCHEDULED", "PENDING", "RUNNING"}
