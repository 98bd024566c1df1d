# The hub's two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench services lint clean

# scripts/assets.sh first: it installs npm if needed and vendors the dashboard's npm
# packages into telemetry/vendor/, which the editable install then finds up to date.
$(STAMP): pyproject.toml setup.py package.json package-lock.json scripts/assets.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	scripts/assets.sh
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: the whole hub in one process with 20 simulated devices
demo: $(STAMP)
	$(BIN)/hub serve --simulate 20

## services: make sure PostgreSQL, Redis and Mosquitto answer on 127.0.0.1
services:
	scripts/services.sh

## test: dev dependencies, services, then the whole suite
test: $(STAMP) services
	scripts/chromium.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest --durations=15

## bench: ingest throughput/latency of the hub against a bare paho ceiling, a naive consumer and Node-RED, with 1 000 alarm rules,
## then HTTP ingest, live fan-out, command round trip and history API rows (bench/README.md)
## (BENCH_ARGS=--quick for a shorter run; BENCH_ARGS="--rows fanout,commands,history" for some rows)
bench: $(STAMP) services
	$(BIN)/python -m bench.ingest $(BENCH_ARGS)

## lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
