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

# Debian's nginx, unpacked into build/ (no service installed or started), for the
# tests and benchmarks of serving an exported tree (tests/nginxhelpers.py).
NGINX := build/nginx/usr/sbin/nginx
$(NGINX):
	mkdir -p build/debs
	cd build/debs && { apt-get download nginx || { apt-get -o DPkg::Lock::Timeout=900 update && apt-get download nginx; }; }
	dpkg-deb -x "$$(ls build/debs/nginx_*.deb | tail -n 1)" build/nginx
	touch $@

test: $(STAMP) $(NGINX)
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

# wrk (and its LuaJIT) from Debian, unpacked into build/wrk: the load generator of
# bench/bench_static.py, so that the client is not the bottleneck.
WRK := build/wrk/usr/bin/wrk
$(WRK):
	mkdir -p build/debs
	cd build/debs && { apt-get download wrk libluajit-5.1-2 || { apt-get -o DPkg::Lock::Timeout=900 update && apt-get download wrk libluajit-5.1-2; }; }
	for deb in build/debs/wrk_*.deb build/debs/libluajit-5.1-2_*.deb; do dpkg-deb -x "$$deb" build/wrk; done
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed $(NGINX) $(WRK)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
