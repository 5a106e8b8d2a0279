# The two README commands, `make demo` and `make test`, do all set-up themselves on a fresh
# Debian machine: system packages (apt-get), a .venv, the Rust build (maturin) and PyPI packages.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STAMPS  := .cache/stamps
# The reference client, installed beside ours as a test peer (its exact pins are compatible).
REFERENCE := nomyo==0.2.9
APT_PACKAGES := swtpm swtpm-tools libtss2-dev pkg-config cmake gcc
export CARGO_TERM_COLOR ?= never
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HYPOTHESIS_STORAGE_DIRECTORY := .cache/hypothesis

.PHONY: help demo test test-rust test-python lint build wheel bench fuzz system-deps clean

help:
	@echo "make demo   - set everything up, start a local secure endpoint, send one encrypted chat"
	@echo "make test   - set everything up, run cargo test, lints and pytest"
	@echo "make bench  - benchmarks side by side with the reference client (table + JSON)"
	@echo "make wheel  - build the abi3 wheel into dist/"
	@echo "make fuzz   - run the cargo-fuzz targets for a bounded time"

demo: build
	$(VENV)/bin/nomyo-native demo

test: build test-rust lint test-python

# ---- set-up -----------------------------------------------------------------------------
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Python dependencies (our extras and the reference client); redone when pyproject.toml changes.
$(STAMPS)/pydeps: pyproject.toml | $(PY) system-deps
	@mkdir -p $(STAMPS)
	$(PY) -m pip install -q "maturin>=1.7,<2"
	$(VENV)/bin/maturin develop -q --release -E server,tpm,test
	$(PY) -m pip install -q $(REFERENCE)
	@touch $@

# The native module, rebuilt incrementally by cargo on every run.
build: $(STAMPS)/pydeps
	$(VENV)/bin/maturin develop -q --release --skip-install

# ---- checks -----------------------------------------------------------------------------
test-rust: system-deps
	cargo test --release --no-default-features

lint: $(STAMPS)/pydeps
	cargo clippy --release --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches

test-python: build
	$(PY) -m pytest -q -p no:cacheprovider

# ---- extras -----------------------------------------------------------------------------
wheel: $(STAMPS)/pydeps
	$(VENV)/bin/maturin build --release -o dist

bench: build
	$(PY) -m pytest benches -q -p no:cacheprovider --benchmark-only \
	  --benchmark-json=.cache/bench.json --benchmark-columns=min,median,mean,max,ops

clean:
	rm -rf target dist .cache $(VENV) python/nomyo_native/*.so
