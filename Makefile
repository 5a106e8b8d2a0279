# The two README commands, `make demo` and `make test`, do all set-up themselves on a fresh
# Debian machine: system packages (apt-get), a .venv, the Rust build (maturin) and PyPI packages.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STAMPS  := .cache/stamps
# The reference client, a test peer in a venv of its own: its exact pins (idna==3.14) conflict
# with httpx2's (idna>=3.18). Tests and benches drive its interpreter, REFERENCE_PY, in
# subprocesses. The stamp lives inside the venv, so deleting the venv redoes it.
REFERENCE    := nomyo==0.2.9
REFERENCE_VENV := .cache/reference-venv
REFERENCE_PY := $(REFERENCE_VENV)/bin/python
REFERENCE_STAMP := $(REFERENCE_VENV)/.installed-$(subst ==,-,$(REFERENCE))
APT_PACKAGES := swtpm swtpm-tools libtss2-dev pkg-config cmake gcc openssl
export CARGO_TERM_COLOR ?= never
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HYPOTHESIS_STORAGE_DIRECTORY := .cache/hypothesis

.PHONY: help demo test test-rust test-python test-ecosystem ecosystem-venvs lint build build-test reference-venv wheel wheels cross-deps cross-check cross-test bench fuzz fuzz-build fuzz-smoke system-deps clean

help:
	@echo "make demo   - set everything up, start a local secure endpoint, send one encrypted chat"
	@echo "make test   - set everything up, run cargo test, lints and pytest"
	@echo "make test-ecosystem - the openai SDK (2.x and 3.x), langchain, llama-index, pydantic-ai, instructor on our transport"
	@echo "make bench  - benchmarks side by side with the reference client (table + JSON)"
	@echo "make wheel  - build and inspect the manylinux2014 x86_64 abi3 wheel into dist/"
	@echo "make wheels - every release wheel (Linux x86_64/aarch64 glibc+musl, Windows, macOS) + sdist"
	@echo "make cross-test - the Rust tests under wine and qemu-aarch64, the arm64 wheel in emulated Debian"
	@echo "make fuzz   - run the cargo-fuzz targets for a bounded time"

demo: build
	$(VENV)/bin/nomyo-native demo

test: build test-rust lint wheel fuzz-smoke test-python test-ecosystem

# ---- set-up -----------------------------------------------------------------------------
system-deps:
	@scripts/apt-install.sh $(APT_PACKAGES)

$(PY):
	@scripts/quietly.sh "creating $(VENV)" python3 -m venv $(VENV)
	@scripts/quietly.sh "upgrading pip" $(PY) -m pip install -q --upgrade pip

# Python dependencies (our extras); redone when pyproject.toml changes.
$(STAMPS)/pydeps: pyproject.toml | $(PY) system-deps
	@mkdir -p $(STAMPS)
	@scripts/quietly.sh "installing maturin" $(PY) -m pip install -q "maturin>=1.7,<2"
	@scripts/quietly.sh "building the native core and installing the extras (server, tpm, test, openai)" \
	  $(VENV)/bin/maturin develop -q --release -E server,tpm,test,openai
	@touch $@

$(REFERENCE_STAMP):
	@rm -rf $(REFERENCE_VENV)
	@scripts/quietly.sh "creating $(REFERENCE_VENV) with the reference client $(REFERENCE)" \
	  python3 -m venv $(REFERENCE_VENV)
	@scripts/quietly.sh "installing the reference client $(REFERENCE) (a test peer)" \
	  $(REFERENCE_PY) -m pip install -q $(REFERENCE)
	@touch $@

reference-venv: $(REFERENCE_STAMP)

# A .venv made before the reference had a venv of its own still holds it (and its httpx 0.28):
# removed once, so that no test can reach it in-process.
$(STAMPS)/reference-out-of-venv: | $(STAMPS)/pydeps
	@scripts/quietly.sh "removing the reference client from $(VENV) (it has a venv of its own)" \
	  $(PY) -m pip uninstall -q -y nomyo httpx httpcore
	@touch $@

# Each cargo configuration has its own target directory, so that alternating between them
# recompiles nothing (our crate is a cdylib: its files carry no feature hash, and one build
# would overwrite the other's). Dependencies compile the same way in all of them, so the others
# are seeded with copies of the release build's (fuzz/seed_target_dir.py) instead of
# compiling aws-lc again.
#   target/          the release module (`make build`, the wheel, `make demo`)
#   target/testing   the same plus `_core._testing`, the probes pytest uses (feature `testing`)
#   target/rust      `cargo test --no-default-features` (the pure-Rust core, no libpython)
#   target/lint      clippy over every feature
TESTING_TARGET := target/testing
RUST_TARGET    := target/rust
LINT_TARGET    := target/lint
SEED_TARGET    := $(PY) fuzz/seed_target_dir.py target/release

# The release module, rebuilt incrementally by cargo on every run.
build: $(STAMPS)/pydeps
	@scripts/quietly.sh "building the native core (cargo, incremental)" \
	  $(VENV)/bin/maturin develop -q --release --skip-install

# The module pytest imports: the release module plus `_core._testing` (never in a wheel).
define install_test_module
	@$(SEED_TARGET) $(TESTING_TARGET)/release >/dev/null
	@CARGO_TARGET_DIR=$(TESTING_TARGET) scripts/quietly.sh "building the test module (feature testing)" \
	  $(VENV)/bin/maturin develop -q --release --skip-install --features testing,pyo3/extension-module
endef

build-test: build
	$(install_test_module)

# ---- the openai SDK and libraries on it (issue 14) ---------------------------------------
# One venv per pin set (tests/ecosystem/pins/NAME.txt): their pins conflict with each other
# (llama-index needs openai<3, pydantic-ai openai>=3, instructor an older jiter than openai 3.x).
# Each runs tests/ecosystem against our source tree and the native module `make build` made.
ECOSYSTEMS := sdk3 sdk2 sdk3-min sdk2-min

$(STAMPS)/ecosystem: $(ECOSYSTEMS:%=tests/ecosystem/pins/%.txt) pyproject.toml \
  scripts/ecosystem_venv.py | $(PY)
	@mkdir -p $(STAMPS)
	@scripts/quietly.sh "creating the ecosystem venvs in .cache/ecosystem ($(ECOSYSTEMS))" \
	  python3 scripts/ecosystem_venv.py $(ECOSYSTEMS)
	@touch $@

ecosystem-venvs: $(STAMPS)/ecosystem

test-ecosystem: build ecosystem-venvs
	@for name in $(ECOSYSTEMS); do \
	  echo "ecosystem: $$name"; \
	  NOMYO_ECOSYSTEM=$$name .cache/ecosystem/$$name/bin/python -m pytest tests/ecosystem -q \
	    -p no:cacheprovider || exit 1; \
	done

# ---- checks -----------------------------------------------------------------------------
test-rust: build
	@$(SEED_TARGET) $(RUST_TARGET)/release >/dev/null
	CARGO_TARGET_DIR=$(RUST_TARGET) cargo test --release --no-default-features

# The release workflow cannot run here: it is validated offline, against GitHub's workflow
# schema (vendored in check-jsonschema) and by zizmor's security audits (pinned actions, no
# template injection, least permissions), neither of which downloads anything.
# mypy is pinned: a new release finds new things, and lint must give the same answer every day.
LINT_TOOLS := "check-jsonschema>=0.29" "zizmor>=1.5" "mypy==2.4.1"

$(STAMPS)/lint-tools: Makefile | $(STAMPS)/pydeps
	@scripts/quietly.sh "installing the linters (check-jsonschema, zizmor, mypy)" $(PY) -m pip install -q $(LINT_TOOLS)
	@touch $@

# The stubs against the compiled modules: `_core.pyi` against the release module (what wheels
# ship, as `make build` installed it), then the test build's `_core._testing` against its stub
# (tests/stubs: the module is in no wheel, neither is its stub; it is not in `_core.__all__`, so
# `_core.pyi` holds for the test build too); lint leaves the test build installed. No
# allowlist: stubtest models everything in these modules.
stubtest = $(PY) -m mypy.stubtest $(1)

lint: build $(STAMPS)/lint-tools
	cargo fmt --check
	rustfmt --check --edition 2021 fuzz/fuzz_targets/*.rs  # its own workspace
	@$(SEED_TARGET) $(LINT_TARGET)/release >/dev/null
	CARGO_TARGET_DIR=$(LINT_TARGET) cargo clippy --release --all-targets --features testing \
	  -- -D warnings
	$(VENV)/bin/ruff check python tests benches scripts
	$(VENV)/bin/ruff format --check python tests benches scripts
	$(VENV)/bin/mypy
	$(PY) scripts/check_sizes.py
	$(call stubtest,nomyo_native._core)
	$(install_test_module)
	MYPYPATH=tests/stubs $(call stubtest,nomyo_native._core._testing)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/zizmor --offline --no-progress .github/workflows

test-python: build-test reference-venv $(STAMPS)/reference-out-of-venv
	$(PY) -m pytest -q -p no:cacheprovider

# ---- wheels -----------------------------------------------------------------------------
# Built by scripts/build_wheels.sh (zig links the Linux and macOS wheels; Debian's rustc-web
# builds std for the targets rustup cannot fetch) and checked by scripts/inspect_wheel.py: tags,
# architecture, glibc floor, imported DLLs, linked dylibs. `make test` builds and inspects the
# manylinux2014 x86_64 wheel (the one users of Linux x86_64 get); tests/test_wheel.py installs it.
WHEEL_TOOLS := ziglang==0.17.1 cargo-zigbuild==0.24.1
WHEEL_DIR   := .cache/wheelhouse

$(STAMPS)/wheel-tools: Makefile | $(STAMPS)/pydeps
	@scripts/quietly.sh "installing the wheel tools ($(WHEEL_TOOLS))" $(PY) -m pip install -q $(WHEEL_TOOLS)
	@touch $@

# Toolchains for the other targets and for the emulated test runs (apt, rustup link).
cross-deps: system-deps
	@scripts/cross-setup.sh

wheel: $(STAMPS)/wheel-tools
	@scripts/quietly.sh "building the manylinux2014 x86_64 wheel (zig, glibc 2.17)" \
	  scripts/build_wheels.sh manylinux2014-x86_64
	$(PY) scripts/inspect_wheel.py $(WHEEL_DIR)/manylinux2014-x86_64 --expect 1

wheels: $(STAMPS)/wheel-tools cross-deps
	rm -f dist/*.whl dist/*.tar.gz
	scripts/build_wheels.sh
	$(PY) scripts/inspect_wheel.py dist --expect 7

# The Rust core's whole test suite for x86_64-pc-windows-gnu under wine and for aarch64 Linux
# under qemu-aarch64, and the aarch64 wheel installed and used in an emulated arm64 Debian
# (debootstrap, cached in .cache/cross/arm64-root). Not part of `make test`: see the README.
cross-test: cross-check
	$(PY) scripts/cross_test.py

# Clippy -D warnings for Windows, aarch64 and musl Linux and both macOS targets (their cfg code).
cross-check: $(STAMPS)/wheel-tools cross-deps
	scripts/cross_check.sh

# ---- extras -----------------------------------------------------------------------------

# Core primitives beside pyca/cryptography, then end to end beside nomyo 0.2.9 (the endpoint in
# its own process); report.py prints the side-by-side table with ratios and PASS/MISS per target.
bench: build reference-venv
	@mkdir -p .cache
	$(PY) -m pytest benches -q -p no:cacheprovider --benchmark-only \
	  --benchmark-json=.cache/bench.json --benchmark-columns=min,median,mean,max,ops
	$(PY) benches/report.py .cache/bench.json --output .cache/bench-report.json \
	  --markdown .cache/bench-table.md

# ---- fuzzing ----------------------------------------------------------------------------
# libFuzzer targets over the core's public API (fuzz/, its own cargo workspace). No nightly
# toolchain and no cargo-fuzz binary needed: the coverage instrumentation cargo-fuzz would add
# (sancov) is made of stable rustc flags, applied to our own crates only by
# fuzz/rustc-wrapper.sh, and the dependencies are linked from the main release build
# (fuzz/seed_target_dir.py) instead of compiled again. `cargo fuzz run <target>` also works.
FUZZ_TARGETS       := open_envelope load_key tpm_structures request_body json_string tls_session
FUZZ_SECONDS       ?= 300
FUZZ_SMOKE_SECONDS ?= 8
FUZZ_BIN           := fuzz/target/release

# The main lock file pins the versions the main build compiled; cargo adds libfuzzer-sys to it.
fuzz/Cargo.lock: Cargo.lock
	cp Cargo.lock $@

fuzz-build: build fuzz/Cargo.lock
	$(PY) fuzz/seed_target_dir.py target/release $(FUZZ_BIN)
	cd fuzz && RUSTC_WRAPPER="$$PWD/rustc-wrapper.sh" cargo build --release --bins

# Each target runs from its committed seeds plus the corpus grown by earlier runs; a crash,
# panic, timeout (a hang) or an allocation past the RSS limit fails the run and leaves the
# input in fuzz/artifacts/.
define run_fuzz
	@mkdir -p fuzz/artifacts $(addprefix fuzz/corpus/,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(1) s"; \
	  if ! $(FUZZ_BIN)/$$t -max_total_time=$(1) -timeout=30 -rss_limit_mb=2048 -max_len=16384 \
	      -print_final_stats=1 -artifact_prefix=fuzz/artifacts/$$t- -dict=fuzz/dicts/$$t.dict \
	      fuzz/corpus/$$t fuzz/seeds/$$t > fuzz/artifacts/$$t.log 2>&1; then \
	    tail -n 40 fuzz/artifacts/$$t.log; echo "fuzz: $$t FAILED (input saved in fuzz/artifacts/)"; \
	    exit 1; \
	  fi; \
	  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' fuzz/artifacts/$$t.log; \
	done
endef

fuzz: fuzz-build
	$(call run_fuzz,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call run_fuzz,$(FUZZ_SMOKE_SECONDS))

clean:
	rm -rf target dist .cache $(VENV) python/nomyo_native/*.so
