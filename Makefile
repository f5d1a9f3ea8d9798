# medpipes: set-up, demo and tests. `make demo` and `make test` each create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medpipes-installed
PYTEST := $(BIN)/python -m pytest

.PHONY: install install-bench demo test test-all test-docker bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# torch first and pinned: a CPU build of 2.13.0 lies on the CI disk; letting a resolver pick torch
# pulls a multi-GB CUDA build. The package itself accepts any torch >=2.4,<3 (GPU machines).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

install-bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/run_demo.sh

# Default run: unit tests + realdata tests (the proof). slow and docker tests: `make test-all`.
test: install
	$(PYTEST) -m "not slow and not docker"

test-all: install-bench
	$(PYTEST) -m ""

test-docker: install
	$(PYTEST) -m docker

bench: install-bench
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf demo-output build dist *.egg-info .pytest_cache
