# The README's entry points: `make serve` and `make test` (lint, then the tests), both from a fresh
# Debian machine; `make lint` alone; `make bench` for the published figures; `make gpu-check` on a
# machine with an NVIDIA GPU.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
APT_PACKAGES := dataset-fashion-mnist prometheus wrk postgresql chromium chromium-driver nginx-light

.PHONY: serve test lint bench gpu-check install install-dev apt-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Debian packages the tests use for real: the dataset, Prometheus/promtool, wrk, PostgreSQL (a
# throwaway cluster per test), Chromium and its driver (the review station in a real browser).
apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing (run as root or: sudo apt-get install -y$$missing)"; exit 2; fi; \
	fi

serve: install
	$(BIN)/garment-sorter serve --host $(HOST) --port $(PORT)

# ruff (lint and format) over everything; mypy: strict for app/ and contract/, typed defs elsewhere.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two workers, each taking whole test files (a file's module fixtures, trained runs and servers, are
# built once): 750-865 s -> 548 s of pytest on 2 vCPUs. More workers than cores would slow the tests
# that load a server to measure it.
TEST_WORKERS ?= 2
test: lint apt-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# Writes docs/benchmarks.md and docs/bench/*.png (about 25 minutes, the 10-minute soak included).
bench: apt-deps install-dev
	$(BIN)/python -m bench suite

# On a machine with an NVIDIA GPU: the device TensorFlow uses, raw images/s by batch size, HTTP with
# batching on and off, a training epoch; writes docs/gpu.md (about 5 minutes after the installs, which
# add tensorflow[and-cuda] where TensorFlow sees no GPU). Without a GPU it says so and installs nothing.
gpu-check:
	@if ! nvidia-smi -L >/dev/null 2>&1; then \
	  echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi finds none): nothing to measure."; exit 0; fi; \
	$(MAKE) --no-print-directory install-dev apt-deps APT_PACKAGES="dataset-fashion-mnist wrk" && \
	GPU_CHECK_COMMAND="make gpu-check" $(BIN)/python -m bench gpu-check
