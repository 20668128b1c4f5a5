# Llama3-8B LoRA contest kit. `make help` lists the targets; each one chains small tools in tools/.
# PROFILE selects the yaml/ profile: tiny (default, CPU) or llama3-8b / llama3-8b-recipe (contest notebook).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PROFILE ?= tiny
# Anything but the tiny CPU profile runs on the contest notebook's Ascend stack.
ifneq ($(filter tiny%,$(PROFILE)),)
PLATFORM ?= cpu
PY ?= .venv/bin/python
else
PLATFORM ?= ascend
PY ?= python3
endif
CACHE ?= .cache
RUNS ?= runs
RUN ?= $(RUNS)/$(PROFILE)
WORKERS ?= 1
TEAM ?= demo
MINDFORMERS_DIR ?=
export PYTHONDONTWRITEBYTECODE := 1

##@ Environment
.PHONY: help setup lint test
help: ## list every target with a one-line description
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo; echo "Variables: PROFILE=$(PROFILE) (tiny | llama3-8b | llama3-8b-recipe), WORKERS, RUN, TEAM, SUBMISSION"

setup: ## create .venv (CPU) or check the notebook (PROFILE=ascend/llama3-8b), then apply mindformers_patches/
ifeq ($(PLATFORM),cpu)
	python3 tools/setup_env.py --platform cpu
else
	python3 tools/setup_env.py --platform ascend $(if $(MINDFORMERS_DIR),--mindformers-dir $(MINDFORMERS_DIR))
endif

lint: ## ruff (py39 target) + vermin (Python 3.9 compatibility) over tools/ and tests/
	$(PY) -m ruff check tools tests
	$(dir $(PY))vermin -q --no-tips --violations --target=3.9- tools tests

test: lint ## lint, then the whole pytest suite (trains, merges, generates and scores the tiny model for real)
	$(PY) -m pytest -q tests
