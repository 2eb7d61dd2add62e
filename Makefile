# hashfed: `make run` and `make test` do everything on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Strict editable installs link each module at install time, so any change to
# the set of modules (or to pyproject.toml) triggers a reinstall.
SOURCES := $(shell find node protocol signing sync hasher -name '*.py' -o -name py.typed 2>/dev/null | sort)
STAMP   := $(VENV)/.installed-$(shell echo $(SOURCES) | cksum | cut -d' ' -f1)

.PHONY: all run test bench lint clean venv fuzz

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

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# python-threatexchange, the partners' pipeline, is the benchmarks' peer; it gets
# a venv of its own so that it never becomes a dependency of hashfed.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet "threatexchange==1.2.17" "faiss-cpu>=1.8"
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed
	$(PY) -m bench

# Longer campaigns: property tests over every decoder of outside bytes
# (tests/test_fuzz_decoders.py), and schemathesis against a live node for 10 minutes.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_fuzz_decoders.py
	HASHFED_FUZZ_SECONDS=600 $(PY) -m pytest -q -s tests/test_openapi.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
