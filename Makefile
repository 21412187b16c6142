# Task Switching Networks: reference implementation and ablation suite.
# Every target creates the virtual environment first (and reinstalls only when requirements.txt changed).

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.requirements.stamp

BUDGET  ?= cpu
DATASET ?=# empty = the budget's dataset (synthetic for smoke and cpu, pascal_context for paper)
RUNS    ?= runs# checkpoints, W&B offline runs and the default study storage
REPORTS ?= reports# tables and figures
STORAGE ?= sqlite:///$(RUNS)/studies.db
SET     ?=# config overrides for every trial of a sweep, e.g. SET="train.threads=1 data.root=/data/PASCAL_MT"
TIMEOUT ?=# seconds after which a sweep starts no new trial (a piece of a long sweep; the same command continues it)
EPOCH   ?=# make tables: the evaluation epoch to report (empty = the budget's report epoch, else the last)
SOURCE  ?= optuna# make tables: optuna (STORAGE) or export (the files of `python -m sweeps export` under EXPORT)
EXPORT  ?= $(REPORTS)/trials
PYTEST_ARGS ?=
TEST_WORKERS ?= 2# pytest-xdist processes for make test (0 = one process); each gets cores / workers threads

.DEFAULT_GOAL := help
SWEEP      := $(PY) -m sweeps run --budget $(BUDGET) $(if $(DATASET),--dataset $(DATASET)) --storage $(STORAGE) \
              --runs-dir $(RUNS) --reports-dir $(REPORTS) $(foreach o,$(SET),--set $(o)) $(if $(TIMEOUT),--timeout $(TIMEOUT))
STUDY   ?= embedding-$(or $(DATASET),synthetic)-$(BUDGET)
# One sweep-NAME target per experiment file that trains (experiments/NAME.yaml; scaling.yaml has train: false).
EXPERIMENT_FILES := $(shell grep -l '^name:' experiments/*.yaml)
TRAINED := $(filter-out $(shell grep -l '^train: false' experiments/*.yaml),$(EXPERIMENT_FILES))
SWEEPS  := $(patsubst experiments/%.yaml,sweep-%,$(TRAINED))
# Diagnoses of TSN's gap at the cpu budget (issue 12): experiments/diagnosis/NAME.yaml, run with diagnose-NAME.
DIAGNOSES := $(wildcard experiments/diagnosis/*.yaml)

# make gpu-check: where its files go (the device tool's $OUT when set), and the wheels a GPU machine without
# network lacks (its image has PyTorch but not the sweep driver's packages): `make gpu-wheels`, then carry .whl/.
GPU_OUT    ?= $(or $(OUT),runs/gpu-check)
GPU_PYTHON ?= 3.12
GPU_WHEELS := optuna optuna-dashboard alembic SQLAlchemy Mako colorlog bottle

.PHONY: help venv test lint format test-all params bench gpu-check gpu-wheels clean sweep-all worker dashboard tables

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  %-18s %s\n", $$1, $$2}'
	@for f in $(TRAINED); do \
	  printf "  %-18s %s\n" "sweep-$$(basename $$f .yaml)" "$$(sed -n 's/^description: //p' $$f)"; done
	@for f in $(DIAGNOSES); do \
	  printf "  %-18s %s\n" "diagnose-$$(basename $$f .yaml)" "$$(sed -n 's/^description: //p' $$f)"; done

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install requirements.txt

test: $(STAMP) ## run the test suite (CPU only; PYTEST_ARGS="-m 'not slow'" for the quick part)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP) ## ruff: lint (pyflakes, pycodestyle, import order, bugbear, pyupgrade) and format check (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff: apply the lint fixes and the formatting that `make lint` checks
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

fuzz: $(STAMP) ## the generative test of bad inputs, long profile (minutes; `make test` runs a few seconds of it)
	TSN_FUZZ_PROFILE=fuzz $(PY) -m pytest tests/test_fuzz.py --hypothesis-show-statistics $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, GPU ones included (needs CUDA)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

params: $(STAMP) ## print the parameter counts of every architecture (paper settings)
	$(PY) -m tsn params --dataset pascal_context --backbone resnet18 --embedding-dim 100 --image-size 512

sweep-%: experiments/%.yaml $(STAMP)
	$(SWEEP) $(TABLES_EACH) $<

diagnose-%: experiments/diagnosis/%.yaml $(STAMP)
	$(SWEEP) $<

sweep-all: TABLES_EACH := --no-tables# its sweeps leave the tables to its last step, which draws every study's once
sweep-all: $(SWEEPS) ## every sweep-NAME below, then every table and figure; BUDGET= DATASET= STORAGE= RUNS= REPORTS=
	$(PY) analysis/make_tables.py --storage $(STORAGE) --out $(REPORTS)

worker: $(STAMP) ## join a running study from this machine: make worker STUDY=embedding-synthetic-cpu STORAGE=...
	$(PY) -m sweeps worker --study $(STUDY) --storage $(STORAGE)

tables: $(STAMP) ## regenerate every table and figure under REPORTS (reports/) from the study storage; EPOCH= SOURCE=export
	$(PY) analysis/make_tables.py --storage $(STORAGE) --out $(REPORTS) --source $(SOURCE) --export-dir $(EXPORT) \
	  $(if $(EPOCH),--epoch $(EPOCH))

dashboard: $(STAMP) ## optuna-dashboard on the study storage (http://127.0.0.1:8080); each study's note says what it is
	$(VENV)/bin/optuna-dashboard $(STORAGE)

bench: $(STAMP) ## measure training speed on this machine and write BENCHMARKS.md
	$(PY) -m bench --out BENCHMARKS.md

gpu-check: $(STAMP) ## issue 14 on one GPU in <= 8 min: CUDA tests, GPU bench, a gpu trial per architecture -> GPU_OUT
	$(PY) -m bench.gpu_check --out $(GPU_OUT) --benchmarks BENCHMARKS.md

gpu-wheels: $(STAMP) ## download into .whl/ the wheels gpu-check needs on a GPU machine without network (GPU_PYTHON=3.12)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl $(GPU_WHEELS)

clean: ## remove caches (keeps RUNS and the venv)
	rm -rf .cache .pytest_cache
