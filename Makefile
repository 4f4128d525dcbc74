# wattstream — `make help` lists the targets. CI runs `make test` through .ci/run.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export WATTSTREAM_CACHE ?= $(HOME)/.cache/wattstream

.PHONY: help install fmt lint typecheck test test-unit bench battery battery-ci demo services-up services-down services-status clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock deploy/install.sh
	bash deploy/install.sh $(VENV)
	@touch $@

install: $(VENV)/.installed  ## create the venv with the locked dependencies

fmt: install  ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint: install  ## ruff
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: install  ## mypy --strict
	$(VENV)/bin/mypy

test: install  ## all tests (unit, integration against real Kafka + TimescaleDB via deploy/), then the kernels without JIT
	$(VENV)/bin/pytest
	NUMBA_DISABLE_JIT=1 $(VENV)/bin/pytest -q tests/unit/test_energy_kernels.py tests/unit/test_intensity_kernels.py tests/unit/test_jsontext.py tests/unit/test_jsonscan.py tests/unit/test_energy_windows.py

test-unit: install  ## unit tests only (no services)
	$(VENV)/bin/pytest tests/unit

bench: install  ## benchmarks in loadtest/, printed as ratios to raw COPY (needs make services-up)
	$(VENV)/bin/wattstream bench

battery: install  ## the reliability battery against the real services (stops and restarts them; ~10 min)
	$(VENV)/bin/wattstream battery --scale full

battery-ci: install  ## the reduced battery CI runs after make test (~4 min)
	$(VENV)/bin/wattstream battery --scale ci

demo: install  ## provision and run everything (Kafka, TimescaleDB, ingest, API, simulator) until Ctrl-C
	bash deploy/demo.sh

services-up: ## start Kafka and TimescaleDB (provisioned on first use, cached)
	bash deploy/services.sh start

services-down: ## stop Kafka and TimescaleDB
	bash deploy/services.sh stop

services-status: ## are they running?
	bash deploy/services.sh status

clean:  ## remove the venv and caches inside the clone (not ~/.cache/wattstream)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts
