# hashfed: `make run` and `make test` do everything on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Strict editable installs link each module at install time, so any change to
# the set of modules (or to pyproject.toml) triggers a reinstall.
SOURCES := $(shell find node protocol signing sync hasher -name '*.py' -o -name py.typed 2>/dev/null | sort)
STAMP   := $(VENV)/.installed-$(shell echo $(SOURCES) | cksum | cut -d' ' -f1)

.PHONY: all run test bench lint clean venv

all: test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install --quiet --upgrade pip "setuptools>=77" wheel

$(STAMP): $(VENV)/bin/python pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PIP) install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m hashfed.node.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
