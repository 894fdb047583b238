"""The Prefect UI as a data team uses it, in headless Chromium against a real server and process worker.

Debian's ``chromium`` (``make chromium`` installs it where missing) driven by Playwright for Python; no
browser is downloaded, and every request that is not to 127.0.0.1 (or a data:/blob: URL) is aborted.
What it covers:
- the deployments page lists retrain / evaluate / corpus, retrain with its daily schedule, and the
  deployment's own page shows an upcoming auto-scheduled run (the scheduler works);
- retrain is started from its Custom run form (config_file set to a tiny pipeline YAML) and completes;
- the gap report, training curve and sample-captions artifacts of that run render their pictures
  (``img`` elements with a non-zero natural width: inlined PNG data URIs, not file links);
- the same run submitted again: every stage task Cached, and the stage artifacts and run summary on the
  new run too;
- train.steps changed in the typed ``config`` form: the run trains with that value, registers model v2 and
  its page links the champion-vs-challenger artifact.
A 503 from the form's submit (SQLite busy on a loaded machine) is retried, as a user would.
Screenshots go to the test's tmp folder, and also to $TOMCAP_UI_SCREENSHOTS if set (for the README).
The test stops only the processes it started.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from flow_helpers import pipeline_yaml
from test_deployments import PREFECT, REPO, RUN_TIMEOUT_S, _cli, _stop, prefect_server  # noqa: F401

from tomcap.pipeline import STAGES

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (pip install -e .[dev])")

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

STAGE_NAMES = {s.name for s in STAGES}

CHROMIUM = Path(os.environ.get("TOMCAP_CHROMIUM", "/usr/lib/chromium/chromium"))  # Debian's binary behind the wrapper
POOL = "tomcap-process"
DEPLOYMENT = "tomcap-retrain/retrain"
PAGE_TIMEOUT_MS = 60_000
SCHEDULE_WAIT_S = 90
SUBMIT_ATTEMPTS = 3
TINY_WARMUP = 2  # tests/flow_helpers.pipeline_yaml's warmup_steps
LOCAL_PREFIXES = ("http://127.0.0.1", "data:", "blob:", "about:")

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found (make chromium installs Debian's chromium)", allow_module_level=True)


def _api(env: dict, path: str, body: dict | None = None):
    req = urllib.request.Request(env["PREFECT_API_URL"] + path, method="GET" if body is None else "POST",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def _wait_final(env: dict, run_id: str, log: Path) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = _api(env, f"/flow_runs/{run_id}")
        if run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return run
        time.sleep(2)
    pytest.fail(f"flow run {run_id} not finished within {RUN_TIMEOUT_S} s; worker log:\n{log.read_text()[-4000:]}")


def _wait_scheduled(env: dict, deployment_id: str) -> None:
    deadline = time.monotonic() + SCHEDULE_WAIT_S
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    while time.monotonic() < deadline:
        if _api(env, "/flow_runs/filter", body):
            return
        time.sleep(1)
    pytest.fail(f"the scheduler created no run of the retrain schedule within {SCHEDULE_WAIT_S} s")


def _artifact_of_run(env: dict, key: str, run_id: str) -> str:
    """Id of the newest artifact ``key`` that the deployment's own run carries (what its page shows)."""
    arts = _api(env, "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [run_id]}},
                                           "sort": "CREATED_DESC", "limit": 1})
    assert arts, f"the run {run_id} has no artifact '{key}'"
    return arts[0]["id"]


@pytest.fixture
def worker(request, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_LOG_RETRYABLE_ERRORS", "true")  # a 503's cause goes to server.log
    env = request.getfixturevalue("prefect_server")  # tests/test_deployments.py's real server
    _cli(env, "work-pool", "create", POOL, "--type", "process")
    _cli(env, "--no-prompt", "deploy", "--all")
    log = tmp_path / "worker.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", POOL, "--limit", "1"], env=env, cwd=REPO,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield env, log
        finally:
            _stop(proc)


@pytest.fixture
def page(tmp_path):
    blocked: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.set_default_timeout(PAGE_TIMEOUT_MS)

            def route(r):
                if r.request.url.startswith(LOCAL_PREFIXES):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            ctx.route("**/*", route)
            pg = ctx.new_page()
            yield pg
        finally:
            browser.close()
    (tmp_path / "blocked_requests.txt").write_text("\n".join(blocked))


def _shot(page, tmp_path: Path, name: str) -> None:
    out = tmp_path / "screenshots"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"))
    if os.environ.get("TOMCAP_UI_SCREENSHOTS"):
        dest = Path(os.environ["TOMCAP_UI_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / f"{name}.png", dest / f"{name}.png")


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")


def _submit_custom_run(page, ui: str, deployment_id: str, config_file: Path, shot: Path | None = None,
                       train_steps: int | None = None) -> str:
    """Fill config_file (and, in the typed ``config`` form, train.steps) in the deployment's Custom run form,
    submit; the created flow run's id."""
    _open(page, f"{ui}/deployments/deployment/{deployment_id}/run")
    if train_steps is not None:
        page.get_by_role("button", name="PipelineConfig", exact=True).click()
        page.get_by_text("Steps (Optional)", exact=True).locator("xpath=following::input[1]").fill(str(train_steps))
        # The form sends every field; its default warmup (30) would exceed a tiny step count.
        warmup = page.get_by_text("Warmup Steps (Optional)", exact=True).locator("xpath=following::input[1]")
        warmup.fill(str(min(TINY_WARMUP, train_steps - 1)))
    field = page.locator("label", has_text="config_file").first.locator("xpath=following::textarea[1]")
    field.fill(str(config_file))
    if shot is not None:
        _shot(page, shot, "custom-run")
    for _ in range(SUBMIT_ATTEMPTS):
        with page.expect_response(lambda r: r.url.endswith("/create_flow_run")) as created:
            page.get_by_role("button", name="Submit", exact=True).click()
        if created.value.status != 503:  # SQLite busy on a loaded machine: the server asks to retry, as a user would
            break
        page.wait_for_timeout(2000)
    assert created.value.ok, created.value.text()
    return created.value.json()["id"]


def _rendered_images(page) -> list[int]:
    """Natural widths of the data-URI images on the page (0: the browser could not decode one)."""
    page.wait_for_selector("img[src^='data:image/png;base64,']")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    return page.eval_on_selector_all("img[src^='data:image/png;base64,']", "es => es.map(e => e.naturalWidth)")


def test_retrain_from_the_ui_and_its_pictures(worker, page, tmp_path):
    env, worker_log = worker
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    deployment = _api(env, f"/deployments/name/{DEPLOYMENT}")

    _open(page, f"{ui}/deployments")
    for name in ("retrain", "evaluate", "corpus"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("At 03:00 AM every day").first.wait_for()
    _shot(page, tmp_path, "deployments")

    _wait_scheduled(env, deployment["id"])  # the page shows what the API had when it loaded
    _open(page, f"{ui}/deployments/deployment/{deployment['id']}")
    page.get_by_text("auto-scheduled").first.wait_for()  # the scheduler's next run, shown under Upcoming
    page.get_by_text("Scheduled for").first.wait_for()

    tiny = pipeline_yaml(tmp_path / "tiny", n_scenes=40, train_steps=3)
    run_id = _submit_custom_run(page, ui, deployment["id"], tiny, shot=tmp_path)
    run = _wait_final(env, run_id, worker_log)
    assert run["state_type"] == "COMPLETED", worker_log.read_text()[-4000:]
    assert run["deployment_id"] == deployment["id"] and run["parameters"]["config_file"] == str(tiny)
    _open(page, f"{ui}/runs/flow-run/{run_id}")
    page.get_by_text("Completed").first.wait_for()
    _shot(page, tmp_path, "flow-run")

    # The same run again from the form: every stage is served from cache, the run still carries the artifacts.
    rerun_id = _submit_custom_run(page, ui, deployment["id"], tiny)
    rerun = _wait_final(env, rerun_id, worker_log)
    assert rerun["state_type"] == "COMPLETED", worker_log.read_text()[-4000:]
    tasks = _api(env, "/task_runs/filter", {"flow_runs": {"id": {"any_": [rerun_id]}}})
    stages = {t["name"]: t["state_name"] for t in tasks if t["name"].rsplit("-", 1)[0] in STAGE_NAMES}
    assert len(stages) >= 6 and set(stages.values()) == {"Cached"}, stages  # model registration reruns (idempotent)
    for key in ("tomcap-gap-report", "tomcap-training-curve", "tomcap-sample-captions", "tomcap-eval-metrics",
                "tomcap-run-summary"):
        _artifact_of_run(env, key, rerun_id)

    # train.steps changed in the typed form: that value trains, a second model version, and the run shows the gate.
    steps_id = _submit_custom_run(page, ui, deployment["id"], tiny, train_steps=4)
    steps_run = _wait_final(env, steps_id, worker_log)
    assert steps_run["state_type"] == "COMPLETED", worker_log.read_text()[-4000:]
    assert steps_run["parameters"]["config"]["train"]["steps"] == 4
    trained = [json.loads(m.read_text())["config"]["steps"] for m in (Path(env["TOMCAP_DATA_DIR"]) / "artifacts" /
                                                                        "train").glob("*/manifest.json")]
    assert sorted(trained) == [3, 4], trained
    _open(page, f"{ui}/artifacts/artifact/{_artifact_of_run(env, 'tomcap-model-promotion', steps_id)}")
    page.get_by_text("Model v2:").first.wait_for()
    page.locator("table").first.wait_for()  # the champion-vs-challenger table
    _shot(page, tmp_path, "model-promotion")

    for key, name, least in (("tomcap-gap-report", "gap-report", 1), ("tomcap-training-curve", "training-curve", 1),
                             ("tomcap-sample-captions", "sample-captions", 2)):
        _open(page, f"{ui}/artifacts/artifact/{_artifact_of_run(env, key, run_id)}")
        widths = _rendered_images(page)
        assert len(widths) >= least and all(w > 0 for w in widths), (key, widths)
        _shot(page, tmp_path, name)
