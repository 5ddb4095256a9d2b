# The two commands of the README: `make run` (the whole stack with a live incident) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps test lint run

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

setup: system-deps $(VENV)/.installed

test: setup
	$(PY) -m pytest -q -ra --tb=native

# lint needs only the venv (no system packages), so CI runs it first and fails fast.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy && $(VENV)/bin/lint-imports

run: setup
	$(VENV)/bin/governor up --demo $(if $(filter true,$(AUTO_APPROVE)),--auto-approve,)
