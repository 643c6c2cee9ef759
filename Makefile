# Two commands on a fresh machine (README): `make demo` and `make test`. Each installs what it needs
# into ./.venv first (once; again only when pyproject.toml or the constraints change).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)
PYTEST_ARGS ?=
PYTEST_WORKERS ?= auto

.PHONY: setup demo test test-fast test-realarch bench clean-catalog browser-deps lint

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing Vitrine and its dependencies into $(VENV) (first time: a few minutes)..."
	@$(VENV)/bin/python -m pip install -q --upgrade pip 2>&1 | { grep -v '^WARNING: Location' || true; }
	@$(VENV)/bin/python -m pip install -q -c requirements/constraints.txt -e ".[dev]" 2>&1 | { grep -v '^WARNING: Location' || true; }
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/vitrine demo --catalog catalog --products products-demo

# One worker per core; a test module stays on one worker (its session fixtures, e.g. the real-architecture
# models, are built once). PYTEST_WORKERS=0 runs in one process.
test: $(STAMP) browser-deps
	$(VENV)/bin/python -m pytest -m "not gpu" -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

# Real-architecture tier (docs/generation.md): builds ~9.5 GB of models in a temp dir, minutes on a CPU.
test-realarch: $(STAMP)
	$(VENV)/bin/python -m pytest -m realarch tests/generation/test_realarch.py $(PYTEST_ARGS)

# Browser tests drive Debian's Chromium (never a downloaded browser). Installed when missing and root.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not found and not root: browser tests will be skipped"; fi; \
	fi

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not gpu and not slow and not distributed and not browser and not notebooks and not realarch" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check pipelines flows bench tests
	$(VENV)/bin/lint-imports --no-logo

bench: $(STAMP)
	$(VENV)/bin/python bench/classic_throughput.py

clean-catalog:
	rm -rf catalog/*/ catalog/_reports catalog/.staging catalog/.trash catalog/.locks products-demo
