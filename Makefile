# podium developer entry points. CI runs `make test` (see .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test chromium lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "installing podium and its dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | { grep -v '^WARNING: Location' || true; }
	@$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

## Install, then run podium's main job end to end on the embedded default (SQLite, simulated executors).
demo: $(STAMP)
	$(BIN)/podium demo

## Install the test dependencies, then lint, type-check and run the whole suite.
test: $(STAMP) chromium
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The dashboard's browser tests use Debian's Chromium; install it where we may (root with apt-get).
chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "no /usr/bin/chromium: the dashboard's browser tests will skip (or fail with PODIUM_REQUIRE_SERVICES=1)"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q -x

## Benchmarks (each compares with its peer installed in its own venv under .bench-venvs/).
bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .bench-venvs .pytest_cache .mypy_cache .ruff_cache podium-data
