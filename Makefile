# conpaassql: `make run` starts a manager with the local cloud and its web front-end,
# `make test` runs every test tier.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
STATE_DIR ?= var
BIND ?= 127.0.0.1
PORT ?= 50000
GUI_PORT ?= 5000
ROUTER_HOST ?= 127.0.0.2
CONFIG ?= etc/manager-local.cnf
PYTEST_ARGS ?=

.PHONY: run test fuzz bench bench-dump bench-replication bench-restart bench-clouds bench-gui bench-core bench-router bench-backup-store bench-archive bench-backup lint typecheck deps clean

deps:
	@PYTHON=$(PYTHON) scripts/bootstrap.sh $(VENV)

run: deps
	@scripts/run-manager.sh "$(VENV)" "$(CONFIG)" "$(STATE_DIR)" "$(BIND)" "$(PORT)" "$(GUI_PORT)" "$(ROUTER_HOST)"

lint: deps
	$(VENV)/bin/ruff check src tests bench testbed

typecheck: deps
	$(VENV)/bin/mypy

test: deps
	$(VENV)/bin/ruff check src tests bench testbed
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The hostile-request suite in its long mode (make test runs a fixed, shorter set).
FUZZ_EXAMPLES ?= 20000
fuzz: deps
	CONPAASSQL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -s tests/integration/test_fuzz.py

bench: deps
	$(VENV)/bin/python bench/provision.py
	$(VENV)/bin/python bench/dump.py
	$(VENV)/bin/python bench/replication.py
	$(VENV)/bin/python bench/restart.py
	$(VENV)/bin/python bench/clouds.py
	$(VENV)/bin/python bench/gui.py
	$(VENV)/bin/python bench/core.py
	$(VENV)/bin/python bench/router.py
	$(VENV)/bin/python bench/backup_store.py
	$(VENV)/bin/python bench/archive.py
	$(VENV)/bin/python bench/backup.py

bench-dump: deps
	$(VENV)/bin/python bench/dump.py

bench-replication: deps
	$(VENV)/bin/python bench/replication.py

bench-restart: deps
	$(VENV)/bin/python bench/restart.py

bench-clouds: deps
	$(VENV)/bin/python bench/clouds.py

bench-gui: deps
	$(VENV)/bin/python bench/gui.py

bench-core: deps
	$(VENV)/bin/python bench/core.py

bench-router: deps
	$(VENV)/bin/python bench/router.py

clean:
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache

bench-backup-store: deps
	$(VENV)/bin/python bench/backup_store.py

bench-backup: deps
	$(VENV)/bin/python bench/backup.py

bench-archive: deps
	$(VENV)/bin/python bench/archive.py
