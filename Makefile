# HC-DC: two commands on a fresh machine (Python 3.11, PostgreSQL on 127.0.0.1:5432):
#   make demo   set up, simulate a small SPHERE archive, ingest it, show the catalog
#   make test   set up, run the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
DEMO_DIR ?= $(CURDIR)/var/demo
REFERENCE_DATA ?= $(if $(HCDC_REFERENCE_DATA),$(HCDC_REFERENCE_DATA),$(abspath $(CURDIR)/../shared/data))
export HCDC_REFERENCE_DATA := $(REFERENCE_DATA)

.PHONY: demo test venv lock bench clean-demo help

help:
	@echo "make demo  - set up and run the demo (SQLite catalog in var/demo)"
	@echo "make test  - set up and run the tests (SQLite and the local PostgreSQL)"
	@echo "make bench - run the benchmarks in bench/"
	@echo "make lock  - re-resolve requirements.in into requirements.lock"

venv: $(STAMP)

# The environment is installed from the lock file only (the versions CI uses).
$(STAMP): requirements.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || python3 -m pip install --quiet uv
	@test -x $(BIN)/python || uv venv --quiet --python $(PYTHON) $(VENV) || uv venv --quiet --python python3 $(VENV)
	uv pip sync --quiet --python $(BIN)/python requirements.lock
	uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/hcdc kernel install
	@rm -f $(VENV)/.installed-* && touch $@

lock:
	uv pip compile requirements.in --python-version 3.11 --no-header -o requirements.lock

demo: venv
	@mkdir -p $(DEMO_DIR)
	HCDC_DATA_DIR=$(DEMO_DIR) $(BIN)/python -m hcdc.demo

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean-demo:
	rm -rf $(DEMO_DIR)
