# hashfed: `make run` and `make test` do everything on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Strict editable installs link each module at install time, so any change to
# the set of modules (or to pyproject.toml) triggers a reinstall.
SOURCES := $(shell find node protocol signing sync hasher -name '*.py' -o -name py.typed 2>/dev/null | sort)
STAMP   := $(VENV)/.installed-$(shell echo $(SOURCES) | cksum | cut -d' ' -f1)

# The python-threatexchange extension (hashfed.sync.pytx) is tested with the real
# pytx in a venv of its own: hashfed's core never imports pytx.
PYTX_VENV  := .venv-pytx
PYTX_MODULES := -m hashfed.sync.pytx $(patsubst sync/pytx/%.py,-m hashfed.sync.pytx.%,\
	$(filter-out sync/pytx/__init__.py,$(wildcard sync/pytx/*.py)))
PYTX_STAMP := $(PYTX_VENV)/.installed-$(shell echo $(SOURCES) | cksum | cut -d' ' -f1)

.PHONY: all run test bench lint clean venv

all: test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install --quiet --upgrade pip "setuptools>=77" wheel

# ImageMagick's MagickWand library decodes XCF and MIFF photos (through Wand).
MAGICKWAND := $(shell ldconfig -p 2>/dev/null | grep -q libMagickWand-6.Q16 && echo present)

$(STAMP): $(VENV)/bin/python pyproject.toml
ifneq ($(MAGICKWAND),present)
	apt-get update && apt-get install -y --no-install-recommends libmagickwand-6.q16-6
endif
	rm -f $(VENV)/.installed-*
	$(PIP) install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m hashfed.node.demo

test: $(STAMP) $(PYTX_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile
	$(PYTX_VENV)/bin/python -m pytest -q -n 2 --dist loadfile tests/pytx

lint: $(STAMP) $(PYTX_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PYTX_VENV)/bin/mypy --config-file pyproject.toml --exclude '^$$' $(PYTX_MODULES)

$(PYTX_VENV)/bin/python: $(VENV)/bin/python
	$(PYTHON) -m venv $(PYTX_VENV)
	$(PYTX_VENV)/bin/pip install --quiet --upgrade pip "setuptools>=77" wheel

$(PYTX_STAMP): $(PYTX_VENV)/bin/python $(STAMP) pyproject.toml
	rm -f $(PYTX_VENV)/.installed-*
	$(PYTX_VENV)/bin/pip install --quiet -e '.[dev,pytx]' --config-settings editable_mode=strict
	touch $@

# python-threatexchange, the partners' pipeline, is the benchmarks' peer; it gets
# a venv of its own so that it never becomes a dependency of hashfed.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet "threatexchange==1.2.17" "faiss-cpu>=1.8"
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed $(PYTX_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(PYTX_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
