# `make test` and `make demo` each build their own virtual environment from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test check demo bench bench-isolation soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: check
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/contender demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Only the isolation case: a costly challenger in shadow mode against the champion alone.
bench-isolation: $(STAMP)
	$(BIN)/python bench/run.py --isolation

# A 10-minute soak of one service: mixed traffic, promotions, a store outage (not a test).
soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) demo contender.db
