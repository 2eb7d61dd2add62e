# hashfed: `make run` and `make test` do everything on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Strict editable installs link each module at install time, so any change to
# the set of modules (or to pyproject.toml) triggers a reinstall.
SOURCES := $(shell find node protocol signing sync hasher -name '*.py' -o -name py.typed 2>/dev/null | sort) $(wildcard node/casepage_static/*)
STAMP   := $(VENV)/.installed-$(shell echo $(SOURCES) | cksum | cut -d' ' -f1)

.PHONY: all run test bench lint clean venv web

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

# The person's page (web/) is built with the pinned npm toolchain (web/package-lock.json)
# into node/casepage_static/, which the wheel ships; the Node test harnesses go to web/build/.
WEB_SOURCES := $(shell find web/src web/test web/static -type f 2>/dev/null) web/build.mjs
WEB_STAMP   := web/build/.built
web/node_modules/.installed: web/package.json web/package-lock.json
	command -v npm >/dev/null || { apt-get update && apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends nodejs npm; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_STAMP): web/node_modules/.installed $(WEB_SOURCES)
	cd web && node build.mjs
	touch $@

web: $(WEB_STAMP)

# The browser tests drive Debian's Chromium (never a downloaded browser build).
/usr/bin/chromium:
	apt-get update && apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends chromium

test: $(STAMP) $(WEB_STAMP) /usr/bin/chromium
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP) web/node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd web && ./node_modules/.bin/tsc --noEmit -p .

# python-threatexchange, the partners' pipeline, is the benchmarks' peer; it gets
# a venv of its own so that it never becomes a dependency of hashfed.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet "threatexchange==1.2.17" "faiss-cpu>=1.8"
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
