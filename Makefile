# Two entry points for a fresh machine with Python 3: `make demo` and `make test`.
# Each creates .venv if missing and installs the pinned dependencies (requirements/constraints.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.tomcap-installed
PYTEST_ARGS ?=

.PHONY: install java chromium demo lint test bench clean-artifacts

install: $(STAMP)

# torch first (its own large wheels), then the project with the exact tested set as constraints.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c $(CONSTRAINTS) torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	# METEOR's paraphrase table once more as a stored gzip in ~/.cache/tomcap (tomcap/evaluate/meteor_table.py): ~3 s faster load
	$(PY) -c "from tomcap.evaluate.meteor_table import write_stored_copy; print(write_stored_copy())"
	touch $(STAMP)

# METEOR and the PTB tokenizer of pycocoevalcap run on Java.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing default-jre-headless (needed by METEOR and the PTB tokenizer)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless) || \
	  { echo "Fix: install a Java runtime, e.g. 'sudo apt-get install -y default-jre-headless'"; exit 1; }; }

# The browser test (tests/test_ui_browser.py) drives Debian's chromium through Playwright; no browser downloads.
chromium:
	@test -x /usr/lib/chromium/chromium || { \
	  echo "chromium not found: installing Debian's chromium (needed by the Prefect UI browser test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  { echo "Fix: install Chromium, e.g. 'sudo apt-get install -y chromium'"; exit 1; }; }

demo: install java
	$(VENV)/bin/tomcap demo

# ruff, configured in pyproject.toml: CI fails on a lint error before running the tests.
lint: install
	$(VENV)/bin/ruff check .

test: install java chromium lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The speed benchmarks, each a same-run ratio with its defaults. The other scripts in benchmarks/ re-run the demo
# (--root, --out), write a named file (pipeline_rerun.py, train_memory.py: OUT.json) or run at real size
# (rehearsal.py, index_scale.py): their docstrings give the command. tests/test_make_bench.py checks the list.
BENCHMARKS := corpus embed_text evaluate flat_search generate index integrity train_step world

bench: install java
	for b in $(BENCHMARKS); do $(PY) benchmarks/$$b.py || exit 1; done

clean-artifacts:
	rm -rf data/artifacts data/world data/runs
