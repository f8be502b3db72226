# convflow-bench. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
DATASET ?= mnist
DATA_DIR ?=
FORCE ?= 0
ROWS ?=

.PHONY: help setup test test-slow lint bench-layers clean demo league tables table-mnist table-cifar10 \
	table-imagenet table-galaxy table-classification

DATASET_FLAG = $(if $(filter-out mnist,$(DATASET)),--dataset $(DATASET),)
DATA_FLAG = $(if $(DATA_DIR),--data_dir $(DATA_DIR),)
FORCE_FLAG = $(if $(filter 1,$(FORCE)),--force,)
ROWS_FLAG = $(if $(ROWS),--rows $(ROWS),)
RUN_TABLES = $(PY) -m bench run-tables --profile $(PROFILE) $(DATASET_FLAG) $(DATA_FLAG) \
	$(FORCE_FLAG) $(ROWS_FLAG)

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## create .venv and install the package editable with dev extras

test: setup ## fast test suite (-m 'not slow', its 15 slowest listed); CI runs it, then test-slow
	$(PY) -m pytest -q

test-slow: setup ## the tests marked slow (DDP, Triton interpreter, FFJORD Jacobians); CI runs them
	$(PY) -m pytest -q -m slow

lint: setup ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-layers: setup ## layer timing benchmarks (inverse-conv solvers), ratios to conv2d
	$(PY) -m bench layers --family inverse_conv

DEMO_RESULTS ?= results/demo

demo: setup ## MNIST tables end to end on the demo profile, your own numbers in results/demo (CPU)
	$(PY) -m bench run-tables --tables mnist --profile demo --budget-minutes 18 $(DATASET_FLAG) \
		$(DATA_FLAG) $(FORCE_FLAG) $(ROWS_FLAG) --results_dir $(DEMO_RESULTS)

LEAGUE_DATA = --dataset fashion_mnist --data_dir $(or $(DATA_DIR),/usr/share/datasets/fashion-mnist)
LEAGUE_SET = evaluate.timing=false trainer.enable_progress_bar=false

league: setup ## the committed CPU league: Inverse-Flow Tables 4 and 2, equal steps, 3 seeds (hours)
	$(PY) -m bench run-tables --tables inverse_flow_t4 --profile paper $(LEAGUE_DATA) --steps 2000 \
		--seeds 3 --work_dir outputs/league --set $(LEAGUE_SET) trainer.limit_val_batches=10
	$(PY) -m bench run-tables --tables inverse_flow_t2 --profile demo $(LEAGUE_DATA) --steps 1000 \
		--seeds 3 --work_dir outputs/league --set $(LEAGUE_SET) trainer.limit_test_batches=1.0 \
		data.batch_size=32

tables: setup ## regenerate results/tables (md, csv, tex, png) from the records alone
	$(PY) -m bench report --print

table-mnist: setup ## Inverse-Flow Tables 2, 3, 4 (+ DFM MNIST): train, test, time, report
	$(RUN_TABLES) --tables mnist

table-cifar10: setup ## Inverse-Flow Tables 5, 6, CDFlow CIFAR-10, i-ConvNet BPD, DFM FID
	$(RUN_TABLES) --tables cifar10

table-imagenet: setup ## CDFlow ImageNet32 and DFM compression on photo crops
	$(RUN_TABLES) --tables imagenet

table-galaxy: setup ## CDFlow Table 2's Galaxy column (needs galaxy.pkl in DATA_DIR, see README)
	$(RUN_TABLES) --tables galaxy

table-classification: setup ## i-ConvNet Table 1 and the inverse-conv MNIST classifier
	$(RUN_TABLES) --tables classification

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
