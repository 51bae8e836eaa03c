# gitml project entry points. `make help` lists them.
SHELL := /bin/bash
# VENV: the environment every target runs in. The default, .venv, is created and filled from
# requirements.lock on first use. Another environment (VENV=/path/to/env, e.g. one you manage
# yourself) is used as it is: nothing is installed into it.
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(abspath $(VENV))/bin
# gitml itself: this checkout, editable.
GITML_SPEC ?= -e .
# Stages run `python -m gitml.stages.<name>`: put the project venv first on PATH.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
# `make test` workers: one per core (the project's machines have 2).
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.DEFAULT_GOAL := help
.PHONY: help venv repro test lint params exps

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the locked dependencies into $(VENV) (a few minutes the first time)"
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	grep -v '^gitml==' requirements.lock | $(BIN)/python -m pip install --progress-bar on -r /dev/stdin
	$(BIN)/python -m pip install --no-deps $(GITML_SPEC)
	@touch $@

ifeq ($(VENV),.venv)
venv: $(VENV)/.installed ## create .venv and install the locked dependencies
else
venv:
	@test -x $(BIN)/gitml || { echo "error: $(BIN)/gitml not found: VENV=$(VENV) must hold gitml (pip install $(GITML_SPEC))" >&2; exit 1; }
endif

repro: venv ## check params.yaml, restore what the DVC remote has, run the pipeline (dvc repro)
	gitml params --check
	@dvc pull --quiet >/dev/null 2>&1 && echo "data and models restored from the DVC cache or remote" \
		|| echo "DVC remote not reachable or empty: dvc repro rebuilds what is missing"
	dvc repro
	dvc metrics show reports/metrics.json

# --durations: the slowest tests show where the time goes
test: venv ## run the tests, one pytest-xdist worker per core (TEST_WORKERS=N to change)
	pytest -n $(TEST_WORKERS) --durations=10

lint: venv ## the pre-commit hooks on all files (ruff, YAML, workflows, params check)
	pre-commit run --all-files

params: venv ## recompose params.yaml from conf/
	gitml params

# A model swap changes every preset hyperparameter (the other model's show as "-"), the
# preprocessing, each stage's dependency hashes and every metric: `dvc exp show --only-changed`
# is over 600 columns wide. `make exps` drops those columns but the model and the headline
# metrics (gitml.tasks.HEADLINE): it fits in 160 columns. Another view:
# `make exps EXPS_DROP='Created|.*/'` (a sweep of one model's hyperparameters).
EXPS_DROP ?= Created|.*/|(estimator|model_name|task|threshold)\b|(test_set|per_class)\.|model\.(params|preprocessing)\.|metrics\.(precision|accuracy|log_loss|brier)\b
exps: venv ## compare experiments in 160 columns: model, headline metrics, other changed params
	@dvc exp show --only-changed --no-pager --drop '$(EXPS_DROP)'

# More targets of your own (optional, not generated): the gitml repository keeps its
# development targets there (test-fast, bench, lock).
-include dev.mk
