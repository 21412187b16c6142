# Task Switching Networks: reference implementation and ablation suite.
# Every target creates the virtual environment first (and reinstalls only when requirements.txt changed).

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.requirements.stamp

BUDGET  ?= cpu
DATASET ?= synthetic
STORAGE ?= sqlite:///runs/studies.db
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test test-all params clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install requirements.txt

test: $(STAMP) ## run the test suite (CPU only; PYTEST_ARGS="-m 'not slow'" for the quick part)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, GPU ones included (needs CUDA)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

params: $(STAMP) ## print the parameter counts of every architecture (paper settings)
	$(PY) -m tsn params --dataset pascal_context --backbone resnet18 --embedding-dim 100 --image-size 512

clean: ## remove caches (keeps runs/ and the venv)
	rm -rf .cache .pytest_cache
