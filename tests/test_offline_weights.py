"""Real weights on a machine without network: one clear line at once, no retries, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tomcap.errors import ConfigError

DEADLINE_S = 60
"""Wall limit of a subprocess; the failure itself takes well under a second (no socket timeouts)."""
REPO = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys
from tomcap.errors import TomcapError
try:
    if sys.argv[1] == 'clip':
        from tomcap.clip import load_clip
        load_clip('ViT-B-32', 'openai', device='cpu')
    else:
        from tomcap.model import AdaptorConfig, build_adaptor
        build_adaptor(AdaptorConfig(gpt2='gpt2', clip_dim=512))
except TomcapError as err:
    print(f'error: {err}', file=sys.stderr)
    sys.exit(err.exit_code)
"""


def _offline_env(tmp_path: Path, how: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    env.update(HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path))
    if how == "flag":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # no flag: the reachability probe finds nothing listening (as on a machine without network)
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    return env


@pytest.mark.parametrize("what, names, how", [("clip", ("ViT-B-32", "openai", "clip.pretrained"), "probe"),
                                              ("gpt2", ("'gpt2'", "train.model.gpt2_dir"), "flag")])
def test_missing_real_weights_fail_fast_with_one_line(tmp_path, what, names, how):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, what], capture_output=True, text=True, cwd=REPO,
                          env=_offline_env(tmp_path, how), timeout=DEADLINE_S)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for name in names:
        assert name in lines[0]
    assert "unreachable (offline)" in lines[0] and "Fix:" in lines[0]
    assert time.perf_counter() - t0 < DEADLINE_S


def test_cached_gpt2_loads_cache_only_when_offline(tmp_path, monkeypatch):
    from tomcap.model import adaptor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("tomcap.hub.cached_file", lambda repo, names: "/cache/config.json")
    assert adaptor.hub_load_kwargs("gpt2") == {"local_files_only": True}
    assert adaptor.hub_load_kwargs(str(tmp_path)) == {}  # a local folder never asks the hub
    monkeypatch.setattr("tomcap.hub.cached_file", lambda repo, names: None)
    with pytest.raises(ConfigError, match="gpt2_dir"):
        adaptor.hub_load_kwargs("gpt2")


def test_cached_clip_tag_loads_cache_only_when_offline(monkeypatch):
    from huggingface_hub import constants

    from tomcap.clip import tag_weights_access

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("tomcap.hub.cached_file", lambda repo, names: f"/cache/{repo}/{names[0]}")
    with tag_weights_access("ViT-B-32", "openai"):
        assert constants.HF_HUB_OFFLINE  # open_clip's hf_hub_download serves the cached file, no request
    monkeypatch.setattr("tomcap.hub.cached_file", lambda repo, names: None)
    with pytest.raises(ConfigError, match="ViT-B-32"):
        tag_weights_access("ViT-B-32", "openai")
