# The two commands of the README: `make run` (worker, beat and Flower on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run run-once status shell test test-unit check lint typecheck bench reliability chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

# A public JumpCloud client from PyPI for the simulator's conformance test (tests/unit/test_simulator_public_client.py),
# installed apart: its top-level package is named `jumpcloud`, as jumpsync's own is, and would hide it in the venv.
CLIENTS := $(VENV)/clients
CLIENTS_STAMP := $(CLIENTS)/.installed

$(CLIENTS_STAMP): $(STAMP) Makefile
	$(BIN)/pip install --quiet --upgrade --target $(CLIENTS) 'jumpcloud>=2.0.1'
	touch $@

install: $(STAMP) $(CLIENTS_STAMP)

# ARGS go to `jumpsync up`, e.g. make run ARGS="--flower-port 5600".
run: $(STAMP)
	$(BIN)/jumpsync up $(ARGS)

run-once: $(STAMP)
	$(BIN)/jumpsync up --once $(ARGS)

# Beside a running `make run` (a second terminal, same folder): jumpsync commands find its settings in var/.
status: $(STAMP)
	$(BIN)/jumpsync status

shell: $(STAMP)
	@echo "a shell with jumpsync on its PATH (exit to leave); in this folder it uses the settings of a running make run"
	@PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" $${SHELL:-/bin/bash}

# Four pytest processes (pytest-xdist), whatever the cores: most integration tests wait on the processes they
# start (workers, servers, jumpsync up), and more test processes overlap those waits. A test file runs whole in
# one of them, so a module's shared servers and fleets stay in one process; each process starts its own Redis and
# PostgreSQL servers. --no-loadscope-reorder keeps the collection order (long modules first, tests/conftest.py):
# by default xdist reorders files by their number of tests, which hands the long ones out last.
XDIST := -n 4 --dist loadfile --no-loadscope-reorder

test: $(STAMP) $(CLIENTS_STAMP)
	bash scripts/ensure-servers.sh
	$(BIN)/pytest -q $(XDIST) $(PYTEST_ARGS)

test-unit: $(STAMP) $(CLIENTS_STAMP)
	$(BIN)/pytest -q $(XDIST) tests/unit $(PYTEST_ARGS)

# The gate CI runs beside the tests: both must report nothing.
check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache jumpsync.db

reliability: $(STAMP)
	bash scripts/ensure-servers.sh
	JUMPSYNC_RELIABILITY_REPORT=docs/reliability.md $(BIN)/pytest -q tests/integration/test_faults.py

# The chaos suite (not part of `make test`; real minutes): one fleet of real processes under restart loops, its
# PostgreSQL and Redis stopped, restarted and wiped, its workers SIGKILLed; the section "Chaos" of
# docs/reliability.md is its report. JUMPSYNC_CHAOS_KEEP_LOGS=1 keeps the processes' logs.
chaos: $(STAMP)
	JUMPSYNC_CHAOS_REPORT=docs/reliability.md $(BIN)/pytest -q -p no:xdist -p no:randomly tests/chaos $(PYTEST_ARGS)

# Benchmarks (not part of `make test`): syncs of named tenant profiles through a real worker fleet against the
# simulator; writes bench/results/*.json and docs/benchmarks.md. E.g. BENCH_ARGS="--profiles xl --database postgres".
bench: $(STAMP)
	bash scripts/ensure-servers.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)
