# convflow-bench. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
DATASET ?= mnist
DATA_DIR ?= data
FORCE ?= 0
ROWS ?=

.PHONY: help setup test test-slow lint bench-layers clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## create .venv and install the package editable with dev extras

test: setup ## fast test suite (what CI runs)
	$(PY) -m pytest -q

test-slow: setup ## slow tests only (training, DDP, large layers)
	$(PY) -m pytest -q -m slow

lint: setup ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-layers: setup ## layer timing benchmarks (inverse-conv solvers), ratios to conv2d
	$(PY) -m bench layers --family inverse_conv

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
