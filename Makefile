# Rebound — the project's vocabulary. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help install test lint demo bench bench-peers bench-operator clean

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)  ## create .venv and install the project (editable) with test extras
	$(PY) -m pip install --quiet -e '.[test]'

test:  ## run the test suite (the README's test command)
	$(PY) -m pytest $(PYTEST_ARGS)

lint:  ## ruff + mypy
	$(VENV)/bin/ruff check peers operator tests bench e2e
	$(VENV)/bin/ruff format --check peers operator tests bench e2e
	$(VENV)/bin/mypy peers operator/rebound_operator

demo:  ## a ~10 s local session, both peers on 127.0.0.1, printing the summary
	$(PY) -m bench.demo

bench: bench-peers bench-operator  ## all benchmarks (prints Markdown tables)

bench-peers:  ## detector throughput + full sessions
	$(PY) -m bench.peers

bench-operator:  ## 100 BallSessions against the emulated API server
	$(PY) -m bench.operator

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# ---- containers, kind, e2e (see docs/install.md) -------------------------------------
