# Task Switching Networks: reference implementation and ablation suite.
# Every target creates the virtual environment first (and reinstalls only when requirements.txt changed).

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.requirements.stamp

BUDGET  ?= cpu
DATASET ?=# empty = the budget's dataset (synthetic for smoke and cpu, pascal_context for paper)
STORAGE ?= sqlite:///runs/studies.db
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
SWEEP      := $(PY) -m sweeps run --budget $(BUDGET) $(if $(DATASET),--dataset $(DATASET)) --storage $(STORAGE)
STUDY   ?= embedding-$(or $(DATASET),synthetic)-$(BUDGET)

.PHONY: help venv test test-all params bench clean sweep-embedding sweep-baselines sweep-schedule sweep-convergence \
        sweep-all worker dashboard tables

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

fuzz: $(STAMP) ## the generative test of bad inputs, long profile (minutes; `make test` runs a few seconds of it)
	TSN_FUZZ_PROFILE=fuzz $(PY) -m pytest tests/test_fuzz.py --hypothesis-show-statistics $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, GPU ones included (needs CUDA)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

params: $(STAMP) ## print the parameter counts of every architecture (paper settings)
	$(PY) -m tsn params --dataset pascal_context --backbone resnet18 --embedding-dim 100 --image-size 512

sweep-embedding: $(STAMP) ## the task-embedding ablation (orthogonal/Gaussian x d x seeds); BUDGET= DATASET= STORAGE=
	$(SWEEP) experiments/embedding.yaml

sweep-baselines: $(STAMP) ## Table 1: single-task, multi-decoder, task BN/IN, TSN x seeds
	$(SWEEP) experiments/baselines.yaml

sweep-schedule: $(STAMP) ## beyond the paper: epoch / batch / joint task switching for TSN
	$(SWEEP) experiments/schedule.yaml

sweep-convergence: $(STAMP) ## per-epoch validation curves of TSN vs task-specific IN/BN
	$(SWEEP) experiments/convergence.yaml

sweep-all: sweep-embedding sweep-baselines sweep-schedule ## every ablation, then every table and figure
	$(PY) analysis/make_tables.py --storage $(STORAGE)

worker: $(STAMP) ## join a running study from this machine: make worker STUDY=embedding-synthetic-cpu STORAGE=...
	$(PY) -m sweeps worker --study $(STUDY) --storage $(STORAGE)

tables: $(STAMP) ## regenerate every table and figure under reports/ from the study storage
	$(PY) analysis/make_tables.py --storage $(STORAGE)

dashboard: $(STAMP) ## optuna-dashboard on the study storage (http://127.0.0.1:8080)
	$(VENV)/bin/optuna-dashboard $(STORAGE)

bench: $(STAMP) ## measure training speed on this machine and write BENCHMARKS.md
	$(PY) -m tsn.bench --out BENCHMARKS.md

clean: ## remove caches (keeps runs/ and the venv)
	rm -rf .cache .pytest_cache
