# Development targets of the gitml repository itself (the Makefile includes this file; a
# generated project has none). `make help` lists them with the others.
.PHONY: test-fast bench lock clients

# The ecosystem clients the serving tests drive (tritonclient, MLflow's scoring client,
# kserve) live in their own environment: they are never gitml dependencies.
CLIENTS_VENV ?= .venv-clients
$(CLIENTS_VENV)/.installed: tests/clients/requirements.lock
	@test -x $(CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(CLIENTS_VENV)
	@echo "installing the ecosystem clients into $(CLIENTS_VENV) (a minute the first time)"
	$(CLIENTS_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(CLIENTS_VENV)/bin/python -m pip install --quiet -r tests/clients/requirements.lock
	@touch $@

clients: $(CLIENTS_VENV)/.installed ## the ecosystem clients' venv for the serving tests
test: $(CLIENTS_VENV)/.installed

test-fast: venv ## unit tests only (no git, dvc or servers): the inner loop, under a minute
	pytest tests/unit tests/test_public_api.py

bench: venv ## benchmarks: init, pipeline, review, registry (vs gto), serving and batch (vs MLflow, raw sklearn), monitoring (vs Evidently)
	python bench/init.py
	python bench/pipeline.py
	python bench/review.py
	python bench/registry.py
	python bench/serve.py
	python bench/monitor.py --log-rows 2000000 10000000

lock: ## re-resolve requirements.lock from pyproject.toml in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^gitml' > requirements.lock
	rm -rf .lock-venv
