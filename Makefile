# custlens — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_DEMO := fonts-noto-cjk poppler-utils
APT_TEST := $(APT_DEMO) chromium

.PHONY: demo test test-fast lint format bench sysdeps-demo sysdeps-test clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e '.[test,spark]'
	touch $@

# Debian packages: CJK fonts (charts, PDF), poppler (PDF → PNG), Chromium (page tests), Java (Spark).
sysdeps-demo:
	@missing=""; for p in $(APT_DEMO); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

sysdeps-test:
	@missing=""; for p in $(APT_TEST); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

demo: sysdeps-demo $(VENV)/.base
	$(VENV)/bin/custlens demo

test: sysdeps-test $(VENV)/.test
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900

test-fast: $(VENV)/.test
	$(PY) -m pytest -q -m "not spark and not browser and not load and not slow"

lint: $(VENV)/.test
	$(VENV)/bin/ruff check src tests bench

format: $(VENV)/.test
	$(VENV)/bin/ruff format src tests bench

$(VENV)/.bench: $(VENV)/.test pyproject.toml
	$(PIP) install -q -e '.[test,spark,bench]'
	command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	touch $@

bench: $(VENV)/.bench
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) custlens-demo .pytest_cache
