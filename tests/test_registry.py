"""Model registry: the pure promotion gate, immutable versions, aliases, rollback, two concurrent promoters."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec
from tomcap.config import StageConfig
from tomcap.errors import ArtifactError, ConfigError
from tomcap.registry import (
    CHAMPION,
    LATEST,
    PROMOTED_EVENT,
    REJECTED_EVENT,
    PromotionConfig,
    Registry,
    comparison_table,
    promotion_gate,
)


# -- the gate, without I/O --------------------------------------------------------------------------------
def test_first_version_is_promoted():
    d = promotion_gate({"CIDEr": 0.3}, None)
    assert d.promote and d.champion is None and d.event == PROMOTED_EVENT


@pytest.mark.parametrize("challenger, tolerance, promote", [
    (0.50, 0.0, True),   # equal is enough
    (0.51, 0.0, True),
    (0.49, 0.0, False),
    (0.49, 0.02, True),  # within the tolerance
    (0.47, 0.02, False),
])
def test_gate_threshold(challenger, tolerance, promote):
    d = promotion_gate({"CIDEr": challenger}, {"CIDEr": 0.50}, PromotionConfig(tolerance=tolerance))
    assert d.promote is promote and d.event == (PROMOTED_EVENT if promote else REJECTED_EVENT)
    assert d.challenger == challenger and d.champion == 0.50 and "CIDEr" in d.reason


def test_gate_other_metric_and_lower_is_better():
    policy = PromotionConfig(metric="loss", higher_is_better=False, tolerance=0.1)
    assert promotion_gate({"loss": 2.05}, {"loss": 2.0}, policy).promote
    assert not promotion_gate({"loss": 2.2}, {"loss": 2.0}, policy).promote
    assert promotion_gate({"CIDEr": 0.1, "Bleu_4": 0.3}, {"CIDEr": 0.5, "Bleu_4": 0.2},
                          PromotionConfig(metric="Bleu_4")).promote


def test_gate_refuses_what_it_cannot_compare():
    with pytest.raises(ConfigError, match="no finite metric 'CIDEr'.*Bleu_4"):
        promotion_gate({"Bleu_4": 0.3, "SPICE": None}, {"CIDEr": 0.5})
    with pytest.raises(ConfigError, match="no finite metric"):
        promotion_gate({"CIDEr": float("nan")}, None)
    assert not promotion_gate({"CIDEr": 0.9}, {"Bleu_4": 0.2}).promote  # champion lacks it
    d = promotion_gate({"CIDEr": 0.9}, {"CIDEr": 0.2}, same_eval_set=False)
    assert not d.promote and "another evaluation set" in d.reason
    with pytest.raises(ValueError):
        PromotionConfig(tolerance=-0.1)


def test_comparison_table():
    rows = comparison_table({"CIDEr": 0.6, "Bleu_4": 0.2, "SPICE": None}, {"CIDEr": 0.5, "METEOR": 0.1})
    by = {r["metric"]: r for r in rows}
    assert by["CIDEr"]["delta"] == pytest.approx(0.1) and by["METEOR"]["challenger"] is None
    assert by["Bleu_4"]["champion"] is None and "SPICE" not in by
    assert comparison_table({"CIDEr": 0.6}, None) == [{"metric": "CIDEr", "champion": None, "challenger": 0.6,
                                                      "delta": None}]
    [count] = comparison_table({"n_images": 5000}, {"n_images": 4000})
    assert count == {"metric": "n_images", "champion": 4000, "challenger": 5000, "delta": 1000}
    assert all(isinstance(count[k], int) for k in ("champion", "challenger", "delta"))


# -- versions in a data dir -------------------------------------------------------------------------------
class _Cfg(StageConfig):
    tag: str


def _art(data, stage, tag, files=None, upstream=None):
    def build(tmp):
        for name, text in (files or {"x.bin": tag}).items():
            (tmp / name).write_text(text)
        return BuildOutput()
    return ArtifactStore(data).build(StageSpec(stage, "test"), _Cfg(tag=tag), upstream or {}, build)


def _model(data, tag, cider, refs="refs-1"):
    """(checkpoint, datastore, evaluation) artifacts of one trained model scored CIDEr ``cider``."""
    train = _art(data, "train", tag, upstream={"corpus": f"corpus-{tag}"})
    index = _art(data, "index", tag)
    evaluation = _art(data, "evaluate", tag, {"metrics.json": json.dumps({"CIDEr": cider, "Bleu_4": cider / 3})},
                      upstream={"refs": refs})
    return {"checkpoint": train, "datastore": index, "evaluation": evaluation}


def test_register_resolve_and_aliases(tmp_path):
    data = tmp_path / "data"
    reg = Registry(data)
    v1 = reg.register(**_model(data, "a", 0.40))
    assert v1.name == "v1" and v1.record.corpus_fingerprint == "corpus-a" and v1.record.eval_set == "refs-1"
    assert reg.register(**_model(data, "a", 0.40)).name == "v1"  # same artifacts: same version
    assert reg.propose("latest").promote
    v2 = reg.register(**_model(data, "b", 0.35))
    assert reg.state().aliases == {LATEST: "v2", CHAMPION: "v1"}
    d = reg.propose("v2")
    assert not d.promote and d.champion == 0.40 and reg.get(CHAMPION).name == "v1"
    assert reg.resolve("champion")["checkpoint"].path == v1.record.checkpoint.path
    assert [v.name for v in reg.versions()] == ["v1", "v2"] and v2.metrics["CIDEr"] == 0.35
    assert [e["action"] for e in reg.state().log] == ["register", "promote", "register", "reject"]

    assert reg.promote("v2").name == "v2"  # a person overrides the gate
    assert reg.rollback().name == "v1" and reg.get(CHAMPION).name == "v1"
    with pytest.raises(ConfigError, match="no earlier champion"):
        reg.rollback()
    with pytest.raises(ConfigError, match="no model version 'v9'.*latest, champion, v1, v2"):
        reg.get("v9")


def test_versions_scored_on_another_set_are_not_promoted(tmp_path):
    data = tmp_path / "data"
    reg = Registry(data)
    reg.register(**_model(data, "a", 0.40))
    reg.propose("v1")
    reg.register(**_model(data, "b", 0.90, refs="refs-2"))
    assert not reg.propose("v2").promote and reg.get(CHAMPION).name == "v1"


def test_a_changed_artifact_is_refused(tmp_path):
    data = tmp_path / "data"
    reg = Registry(data)
    parts = _model(data, "a", 0.40)
    reg.register(**parts)
    (parts["checkpoint"].dir / "x.bin").write_text("other weights")
    with pytest.raises(ArtifactError, match="x.bin"):
        reg.resolve("v1")


def test_unreadable_state_names_the_file(tmp_path):
    reg = Registry(tmp_path / "data")
    reg.dir.mkdir(parents=True)
    reg.state_path.write_text("{not json")
    with pytest.raises(ArtifactError, match="state.json"):
        reg.versions()


def _promoter(data, models, barrier, out):
    reg = Registry(data)
    barrier.wait()
    for parts in models:
        v = reg.register(**parts)
        out.put((v.name, reg.propose(v.name).promote))


def test_two_concurrent_promoters_stay_consistent(tmp_path):
    """Two processes register and propose interleaved versions at once: no lost update, names unique and
    contiguous, the champion is the best version, and the log replays to the final aliases."""
    data = tmp_path / "data"
    n = 6
    scores = [0.1 + 0.05 * i for i in range(2 * n)]
    models = [_model(data, f"m{i}", s) for i, s in enumerate(scores)]
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_promoter, args=(data, models[i::2], barrier, out)) for i in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(2 * n)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    reg = Registry(data)
    st = reg.state()
    assert sorted(st.versions, key=lambda s: int(s[1:])) == [f"v{i}" for i in range(1, 2 * n + 1)]
    assert len({r[0] for r in results}) == 2 * n
    best = max(reg.versions(), key=lambda v: v.metrics["CIDEr"])
    assert st.aliases[CHAMPION] == best.name and best.metrics["CIDEr"] == max(scores)
    assert st.revision == len(st.log) == 4 * n  # every register and every decision, none lost
    champion = None
    for e in st.log:  # replaying the log gives the final state
        if e["action"] == "promote":
            assert e["champion"] == champion
            champion = e["version"]
    assert champion == st.aliases[CHAMPION] and st.champions[-1] == champion
    assert sum(promoted for _, promoted in results) == len(st.champions)


# -- tomcap models ----------------------------------------------------------------------------------------
def test_models_cli(tmp_path, capsys):
    from tomcap.cli.main import main

    data = tmp_path / "data"
    parts = [_model(data, t, c) for t, c in (("a", 0.40), ("b", 0.30), ("c", 0.45))]
    dd = ["--data-dir", str(data)]
    assert main(["models", *dd]) == 0 and "no model versions" in capsys.readouterr().out
    for p in parts[:2]:
        assert main(["models", "register", *dd, "--train", p["checkpoint"].path, "--index", p["datastore"].path,
                     "--evaluate", p["evaluation"].path, "--propose"]) == 0
    out = capsys.readouterr().out
    assert "v1: promoted to champion" in out and "v2: not promoted (CIDEr 0.3 < champion 0.4" in out
    assert main(["models", "promote", "v2", *dd]) == 2  # the gate says no: exit 2, one line, the fix
    captured = capsys.readouterr()
    assert "v2 not promoted" in captured.err and "--force" in captured.err and "Traceback" not in captured.err
    assert main(["models", "promote", "v2", "--tolerance", "0.2", *dd, "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["promoted"] and last["aliases"] == {"latest": "v2", "champion": "v2"}
    assert {r["metric"]: r["delta"] for r in last["comparison"]}["CIDEr"] == pytest.approx(-0.1)
    assert main(["models", "rollback", *dd]) == 0 and "champion is v1 again" in capsys.readouterr().out
    assert main(["models", *dd, "list"]) == 0  # --data-dir before the action is kept
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["version", "aliases", "CIDEr"]
    assert listing[1].split()[:3] == ["v1", "champion", "0.4"] and listing[2].split()[:2] == ["v2", "latest"]
    assert main(["models", "promote", "v7", *dd]) == 2 and "no model version 'v7'" in capsys.readouterr().err
    assert main(["models", "rollback", *dd]) == 2 and "no earlier champion" in capsys.readouterr().err
    wrong = parts[2]["datastore"].path  # an index artifact where the checkpoint belongs
    assert main(["models", "register", *dd, "--train", wrong, "--index", wrong,
                 "--evaluate", parts[2]["evaluation"].path]) == 2
    assert "expected a 'train' artifact" in capsys.readouterr().err
    assert main(["models", "clip"]) == 0 and "ViT-B-32" in capsys.readouterr().out
