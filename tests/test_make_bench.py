"""`make bench` runs a named list of benchmarks with their defaults: each name is a script needing no arguments."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_names() -> list[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^BENCHMARKS := (.+)$", text, re.M)
    assert match, "Makefile has no BENCHMARKS list"
    return match.group(1).split()


def required_arguments(script: Path) -> list[str]:
    """Arguments the script's argparse requires: positional ones and ``required=True`` options, plus the
    demo-rerunning helper's (``demo_arguments`` requires --root and --out)."""
    out = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        if name == "demo_arguments":
            out.append("--root/--out")
        if name == "add_argument" and node.args:
            flag = node.args[0]
            positional = isinstance(flag, ast.Constant) and not str(flag.value).startswith("-")
            required = any(k.arg == "required" and getattr(k.value, "value", False) is True for k in node.keywords)
            if positional or required:
                out.append(str(getattr(flag, "value", "?")))
    return out


def test_every_listed_benchmark_runs_without_arguments():
    names = bench_names()
    assert names
    for name in names:
        script = ROOT / "benchmarks" / f"{name}.py"
        assert script.is_file(), f"Makefile BENCHMARKS names {name}, which is not in benchmarks/"
        assert required_arguments(script) == [], f"{name}.py needs arguments; make bench runs it without"


def test_the_check_sees_the_scripts_that_need_arguments():
    # The demo-rerunning scripts are left out of the list because they need --root/--out: the check must see that.
    assert required_arguments(ROOT / "benchmarks" / "tune_adaptor.py") == ["--root/--out"]
    assert required_arguments(ROOT / "benchmarks" / "gap_sweep.py") == ["--out"]
