# gitml developer entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(abspath $(VENV))/bin
# Stages run `python -m gitml.stages.<name>`: put the project venv first on PATH.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
# `make test` workers: one per core (the project's machines have 2).
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.DEFAULT_GOAL := help
.PHONY: help venv repro test test-fast lint bench lock params

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(VENV)/.installed ## create .venv and install the locked dependencies

repro: venv ## check params.yaml, restore what the DVC remote has, run the pipeline (dvc repro)
	gitml params --check
	@dvc pull --quiet >/dev/null 2>&1 && echo "data and models restored from the DVC cache or remote" \
		|| echo "DVC remote not reachable or empty: dvc repro rebuilds what is missing"
	dvc repro
	dvc metrics show reports/metrics.json

# --durations: the suite must stay under 10 minutes on 2 cores; the slowest tests show where it goes
test: venv ## run the whole test suite, one pytest-xdist worker per core (TEST_WORKERS=N to change)
	pytest -n $(TEST_WORKERS) --durations=10

test-fast: venv ## unit tests only (no git, dvc or servers): the inner loop, under a minute
	pytest tests/unit tests/test_public_api.py

lint: venv ## ruff, import contracts, mypy, YAML, workflow and params checks (pre-commit, all files)
	pre-commit run --all-files

bench: venv ## benchmarks: pipeline, review, registry (vs gto), serving and batch (vs MLflow, raw sklearn)
	python bench/pipeline.py
	python bench/review.py
	python bench/registry.py
	python bench/serve.py

params: venv ## recompose params.yaml from conf/
	gitml params

lock: ## re-resolve requirements.lock from pyproject.toml in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^gitml' > requirements.lock
	rm -rf .lock-venv
