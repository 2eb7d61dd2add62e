# hashfed: `make run` and `make test` do everything on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Strict editable installs link each module at install time, so any change to
# the set of modules (or to pyproject.toml) triggers a reinstall.
SOURCES := $(shell find node protocol signing sync hasher -name '*.py' -o -name '*.pyi' -o -name py.typed 2>/dev/null | sort) $(wildcard node/http/casepage_static/*)
STAMP   := $(VENV)/.installed-$(shell echo $(SOURCES) | cksum | cut -d' ' -f1)

# The python-threatexchange extension (hashfed.sync.pytx) is tested with the real
# pytx in a venv of its own: hashfed's core never imports pytx.
PYTX_VENV  := .venv-pytx
PYTX_MODULES := -m hashfed.sync.pytx $(patsubst sync/pytx/%.py,-m hashfed.sync.pytx.%,\
	$(filter-out sync/pytx/__init__.py,$(wildcard sync/pytx/*.py)))
PYTX_STAMP := $(PYTX_VENV)/.installed-$(shell echo $(SOURCES) | cksum | cut -d' ' -f1)

.PHONY: all run test bench lint clean venv tools corpus web fuzz docs

all: test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update && apt-get -o DPkg::Lock::Timeout=900 install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install --quiet --upgrade pip "setuptools>=77" wheel

# ImageMagick's MagickWand library decodes MIFF photos (through Wand).
MAGICKWAND := $(shell ldconfig -p 2>/dev/null | grep -q libMagickWand-6.Q16 && echo present)

# hasher/_pdq.c and node/match/_mih.c are compiled at install time: they need gcc and
# Python's headers.
PYTHON_H := $(shell $(PYTHON) -c "import os, sysconfig; print('present' if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else '')" 2>/dev/null)

$(STAMP): $(VENV)/bin/python pyproject.toml hasher/_pdq.c node/match/_mih.c
ifneq ($(MAGICKWAND),present)
	apt-get update && apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends libmagickwand-6.q16-6
endif
ifneq ($(PYTHON_H),present)
	apt-get update && apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends gcc python3-dev
endif
	rm -f $(VENV)/.installed-*
	$(PIP) install --quiet -e '.[dev]' --config-settings editable_mode=strict
	$(COMPILE_PACKAGE)
	touch $@

# Bytecode for hashfed's own modules, as a wheel install has: where PYTHONDONTWRITEBYTECODE
# is set, an editable install would otherwise compile every module at every start
# (a quarter of 'hashfed serve''s start-up). Stale files are only ever ignored.
COMPILE_PACKAGE = $(PY) -c "import compileall, hashfed; [compileall.compile_dir(p, quiet=1) for p in hashfed.__path__]" >/dev/null

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m hashfed.node.demo

# The person's page (web/) is built with the pinned npm toolchain (web/package-lock.json)
# into node/http/casepage_static/, which the wheel ships; the Node test harnesses go to web/build/.
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

# A real third-party corpus for tests/test_hasher_corpus.py, pinned: the test images of
# Pillow's source distribution and the DICOM files pydicom's wheel ships.
CORPUS := .corpus
CORPUS_PILLOW := 12.0.0
CORPUS_PYDICOM := 3.0.1
$(CORPUS)/.ready-$(CORPUS_PILLOW)-$(CORPUS_PYDICOM): $(VENV)/bin/python
	rm -rf $(CORPUS) && mkdir -p $(CORPUS)/download
	$(PIP) download --quiet --no-deps --no-binary :all: "pillow==$(CORPUS_PILLOW)" -d $(CORPUS)/download
	$(PIP) download --quiet --no-deps --only-binary :all: "pydicom==$(CORPUS_PYDICOM)" -d $(CORPUS)/download
	tar -xzf $(CORPUS)/download/pillow-$(CORPUS_PILLOW).tar.gz -C $(CORPUS) pillow-$(CORPUS_PILLOW)/Tests/images
	mv $(CORPUS)/pillow-$(CORPUS_PILLOW)/Tests/images $(CORPUS)/pillow && rm -rf $(CORPUS)/pillow-$(CORPUS_PILLOW)
	$(PY) -m zipfile -e $(CORPUS)/download/pydicom-$(CORPUS_PYDICOM)-*.whl $(CORPUS)/wheel
	mv $(CORPUS)/wheel/pydicom/data/test_files $(CORPUS)/pydicom && rm -rf $(CORPUS)/wheel $(CORPUS)/download
	touch $@

corpus: $(CORPUS)/.ready-$(CORPUS_PILLOW)-$(CORPUS_PYDICOM)


# Debian's nginx, unpacked into build/ (no service installed or started), for the
# tests and benchmarks of serving an exported tree (tests/nginxhelpers.py).
NGINX := build/nginx/usr/sbin/nginx
$(NGINX):
	mkdir -p build/debs
	cd build/debs && { apt-get download nginx || { apt-get -o DPkg::Lock::Timeout=900 update && apt-get download nginx; }; }
	dpkg-deb -x "$$(ls build/debs/nginx_*.deb | tail -n 1)" build/nginx
	touch $@

test: $(STAMP) $(PYTX_STAMP) $(WEB_STAMP) /usr/bin/chromium tools corpus $(NGINX)
	$(PY) -m pytest -q -n 2 --dist loadfile
	$(PYTX_VENV)/bin/python -m pytest -q -n 2 --dist loadfile tests/pytx

# Operations tests: promtool (from Debian's prometheus package, unpacked, its daemon
# never installed or started) checks docs/alerts.yml; systemd-analyze checks the unit.
# If either cannot be had, its test skips and says why.
PROMTOOL := build/tools/usr/bin/promtool
$(PROMTOOL):
	mkdir -p build/tools
	-cd build/tools && { apt-get download prometheus 2>/dev/null \
		|| { apt-get update && apt-get download prometheus; }; } \
		&& dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb

APT_INSTALL := apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends
tools: $(PROMTOOL)
	-command -v systemd-analyze >/dev/null || $(APT_INSTALL) systemd \
		|| { apt-get update && $(APT_INSTALL) systemd; }

lint: $(STAMP) $(PYTX_STAMP) web/node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd web && ./node_modules/.bin/tsc --noEmit -p .
	$(PYTX_VENV)/bin/mypy --config-file pyproject.toml --exclude '^$$' $(PYTX_MODULES)

$(PYTX_VENV)/bin/python: $(VENV)/bin/python
	$(PYTHON) -m venv $(PYTX_VENV)
	$(PYTX_VENV)/bin/pip install --quiet --upgrade pip "setuptools>=77" wheel

# Both venvs link build/__editable__*: this one is installed after .venv's.
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

# wrk (and its LuaJIT) from Debian, unpacked into build/wrk: the load generator of
# bench/bench_static.py, so that the client is not the bottleneck.
WRK := build/wrk/usr/bin/wrk
$(WRK):
	mkdir -p build/debs
	cd build/debs && { apt-get download wrk libluajit-5.1-2 || { apt-get -o DPkg::Lock::Timeout=900 update && apt-get download wrk libluajit-5.1-2; }; }
	for deb in build/debs/wrk_*.deb build/debs/libluajit-5.1-2_*.deb; do dpkg-deb -x "$$deb" build/wrk; done
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed $(PYTX_STAMP) corpus $(NGINX) $(WRK)
	$(COMPILE_PACKAGE)
	$(PY) -m bench

# docs/configuration.md is generated from the settings declared in node/config.py
# (tests/test_config_reference.py fails when it is out of date).
docs: $(STAMP)
	$(PY) -m hashfed.node.config --markdown > docs/configuration.md.tmp
	mv docs/configuration.md.tmp docs/configuration.md

# Longer campaigns: property tests over every decoder of outside bytes
# (tests/test_fuzz_decoders.py), schemathesis against a live node for 10 minutes, and
# atheris (coverage-guided, libFuzzer) over the same decoders for 5 minutes.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_fuzz_decoders.py
	HASHFED_FUZZ_SECONDS=600 $(PY) -m pytest -q -s tests/test_openapi.py
	@if $(PIP) install --quiet "atheris>=2.3"; then \
		mkdir -p build/fuzz && cd build/fuzz && \
		../../$(PY) ../../tests/fuzz_atheris.py -max_total_time=300; \
	else echo "atheris does not install here: the coverage-guided campaign is skipped"; fi

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(PYTX_VENV) $(CORPUS) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
