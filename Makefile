# Two commands matter: `make demo` (the main job) and `make test` (the whole suite, lint and types included).
# Each sets itself up: the Debian packages it needs, a virtual environment in .venv, the project installed into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit bench setup clean schemas

$(STAMP): setup.py pyproject.toml scripts/system-packages.sh
	bash scripts/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,dev,postgresql]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tgw demo

test: $(STAMP)
	bash scripts/system-packages.sh chromium cjk-font
	$(MAKE) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# 100 % branch coverage of the protocol core (protocols/) is part of the suite's verdict.
unit: $(STAMP)
	$(BIN)/pytest --cov=protocols --cov-branch --cov-report=term-missing:skip-covered --cov-fail-under=100 $(PYTEST_ARGS)

# The protocol core's codec, then the whole gateway against a simulated bank (SQLite and PostgreSQL, RSA and
# P-256; a few minutes): tables on the terminal, JSON under bench-results/ (docs/performance.md explains them).
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/tgw bench codec
	$(BIN)/tgw bench gateway
	$(BIN)/tgw bench dialects
	$(BIN)/tgw bench reconcile

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis

# Rewrites the published XSDs from the message table (a test fails when they differ).
schemas: $(STAMP)
	$(BIN)/python -c "from pathlib import Path; from protocols.schema import generate_all; generate_all(Path('protocols/schemas'))"

# Rewrites the golden vectors (tests/vectors/) from protocols/samples.py: only for an intended change.
vectors: $(STAMP)
	$(BIN)/python -m tests.vectors.regenerate
