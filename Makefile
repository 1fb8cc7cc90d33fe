# HC-DC: two commands on a fresh machine (Python 3.11, PostgreSQL on 127.0.0.1:5432):
#   make demo   set up, simulate a small SPHERE archive, ingest it, show the catalog
#   make test   set up, run the test suite
SHELL := /bin/bash
# Debian's interpreter when there is one: PI accounts (hub spawns) must be able to run it,
# which they cannot when it lives under root's home (pyenv).
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3.11)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell (cat requirements.lock pyproject.toml; echo $(PYTHON)) 2>/dev/null | sha256sum | cut -c1-16)
DEMO_DIR ?= $(CURDIR)/var/demo
REFERENCE_DATA ?= $(if $(HCDC_REFERENCE_DATA),$(HCDC_REFERENCE_DATA),$(abspath $(CURDIR)/../shared/data))
export HCDC_REFERENCE_DATA := $(REFERENCE_DATA)

.PHONY: demo test lint docs venv system-deps lock bench clean-demo help

help:
	@echo "make demo  - set up and run the demo (SQLite catalog in var/demo)"
	@echo "make test  - set up, check lint and format (ruff), run the tests (SQLite and PostgreSQL)"
	@echo "make lint  - ruff check and ruff format --check"
	@echo "make docs  - build the documentation site (docs/_build/html; offline, warnings are errors)"
	@echo "make bench - run the benchmarks in bench/"
	@echo "make lock  - re-resolve requirements.in into requirements.lock"

venv: $(STAMP)

# The environment is installed from the lock file only (the versions CI uses).
$(STAMP): requirements.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --break-system-packages uv
	@# a new interpreter or lock: start from a clean environment
	@want=$$(readlink -f "$$(command -v $(PYTHON))"); have=$$(readlink -f $(BIN)/python 2>/dev/null); \
	if [ -n "$$have" ] && [ "$$have" != "$$want" ]; then echo "recreating $(VENV) for $$want"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || uv venv --quiet --python $(PYTHON) $(VENV)
	@# bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on these machines) every
	@# kernel, worker and test process would otherwise recompile the stack (imports 4.4 s -> 1.8 s)
	uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q hcdc reduction hcdc_widgets >/dev/null
	env -u HCDC_CATALOG_URL $(BIN)/hcdc kernel install
	@# JupyterHub's proxy (npm) for the hub and its tests
	@command -v configurable-http-proxy >/dev/null 2>&1 || npm install --silent -g configurable-http-proxy
	@rm -f $(VENV)/.installed-* && touch $@

lock:
	uv pip compile requirements.in --python-version 3.11 --no-header -o requirements.lock

# The demo ends by starting JupyterHub (with the dashboards service) on 127.0.0.1 in the
# foreground when run from a terminal; HCDC_DEMO_NO_HUB=1 (or no terminal) skips that.
demo: venv
	@mkdir -p $(DEMO_DIR)
	HCDC_DATA_DIR=$(DEMO_DIR) $(BIN)/python -m hcdc.demo
	@if [ -t 0 ] && [ -z "$$HCDC_DEMO_NO_HUB" ]; then \
	  echo "starting JupyterHub on 127.0.0.1 (Ctrl-C stops it); demo accounts and passwords below"; \
	  HCDC_DATA_DIR=$(DEMO_DIR) $(BIN)/hcdc hub start --demo-users; \
	else echo "JupyterHub not started (no terminal): HCDC_DATA_DIR=$(DEMO_DIR) $(BIN)/hcdc hub start --demo-users"; fi

# Debian packages the tests drive for real: SLURM + munge (campaigns on dask-jobqueue), Chromium
# (dashboards), GAVO DaCHS with pgSphere and q3c on the machine's PostgreSQL version, and stilts
# (taplint) for the public VO service. Installed when missing and root; otherwise those tests skip
# with the reason. (Debian's gavodachs2-server is not used: its postinst sets up a system-wide
# instance on the machine's shared PostgreSQL; hcdc vo setup runs DaCHS on a cluster of its own.)
PG_MAJOR := $(shell ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
PG_EXTENSIONS := /usr/share/postgresql/$(PG_MAJOR)/extension
SYSTEM_PACKAGES := slurmctld:slurm-wlm slurmd:slurm-wlm munged:munge chromium:chromium \
  dachs:python3-gavo stilts:stilts \
  $(if $(PG_MAJOR),$(PG_EXTENSIONS)/pg_sphere.control:postgresql-$(PG_MAJOR)-pgsphere \
    $(PG_EXTENSIONS)/q3c.control:postgresql-$(PG_MAJOR)-q3c)
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do tool=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$tool >/dev/null 2>&1 || test -x /usr/sbin/$$tool || test -e $$tool || missing="$$missing $$pkg"; done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// }" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not root: $$missing not installed, the tests that need them will skip"; fi; fi

# The suite runs in four pytest processes of at most ~150 tests each (every chunk runs, the first
# failure's status is make's): a single process died now and then with a segmentation fault in the
# garbage collector, always 160-240 tests in (8 times, wherever the order put them; cause not found,
# see the session-13 note); no chunk reaches that far
TEST_CHUNKS = "tests/isolation tests/test_[a-d]*.py" "tests/test_[e-o]*.py" "tests/test_p*.py" "tests/test_[q-z]*.py"

test: venv system-deps lint docs
	@status=0; for chunk in $(TEST_CHUNKS); do echo "pytest $$chunk"; \
	  $(BIN)/python -m pytest $(PYTEST_ARGS) $$chunk; rc=$$?; [ $$status != 0 ] || status=$$rc; done; exit $$status

# the Sphinx site: references generated from the code, pages from the benchmarks' JSON; a broken
# reference or a warning fails the build (and so make test)
docs: venv
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "documentation: docs/_build/html/index.html"

# ruff (configured in pyproject.toml): lint and formatting are checked before the tests run
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean-demo:
	rm -rf $(DEMO_DIR)
