# Every target people, CI and the README use. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv with the pinned dependencies

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# Prefect's temporary server usually starts in 12-14 s here, but its default timeout (20 s)
# was once exceeded by a fresh clone's first `make demo` on a busy 2-core machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

demo: $(STAMP) ## Run the loop on generated data with embedded defaults
	$(BIN)/mlops demo

test: $(STAMP) ## Lint, then run every test (unit, integration, e2e; slow ones too)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## Unit tests on both cores, without those marked slow (make test runs them)
	$(BIN)/python -m pytest tests/unit -q -m "not slow" -n 2

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Run the benchmarks (prints ratios against baselines)
	$(BIN)/python benchmarks/data_prep.py

lock: ## Re-resolve dependencies from pyproject.toml into constraints.txt
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,3p' constraints.txt; .lockvenv/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lockvenv

clean: ## Remove the virtual environment and local store
	rm -rf $(VENV) .mlops

.PHONY: help venv demo test test-fast lint format bench lock clean
