# The two commands of the README: `make run` (the whole stack with a live incident) and `make test`.
# `make run` needs only Python 3.11+: it installs the runtime dependencies (pyproject's `dependencies`) into .venv.
# `make test`/`make bench`/`make lint` add the dev extras, and `make test`/`make bench` the Debian packages the tests
# and benchmarks drive (Chromium, Prometheus/promtool, Alertmanager, docker-compose, wrk: scripts/install-system-deps.sh).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps test bench lint run

# The runtime install: what `make run` needs, nothing else.
$(VENV)/.runtime: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	touch $@

# The development install: the runtime plus the dev extras (test, lint and bench tools).
$(VENV)/.installed: pyproject.toml $(VENV)/.runtime
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

setup: system-deps $(VENV)/.installed

test: setup
	$(PY) -m pytest -q -ra --tb=native --instafail

# One benchmark (bench/<name>.py; docs/benchmarks.md has each one's command and table): `make bench BENCH=failover`.
BENCH ?= gateway
bench: setup
	$(PY) -m bench.$(BENCH) $(BENCH_ARGS)

# lint needs only the venv (no system packages), so CI runs it first and fails fast.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy && $(VENV)/bin/lint-imports

run: $(VENV)/.runtime
	$(VENV)/bin/governor up --demo $(if $(filter true,$(AUTO_APPROVE)),--auto-approve,)
