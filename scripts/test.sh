#!/usr/bin/env bash
# test.sh — the whole test suite, from a fresh clone on Debian/Ubuntu, as root.
# Installs what it needs (scripts/install-deps.sh), checks formatting and lints, builds, builds the
# offline test fixtures (cached under target/fixtures) and the guest image (target/vm-image), then runs
# the unit tests, the docker CLI integration tests (tests/tests, including the VM under QEMU) and the
# docker-py tests (tests/python).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "build"
cargo build --workspace

step "fixtures"
python3 tests/fixtures/build_fixtures.py target/fixtures

step "guest image (vm-image/build.py: static agent, kernel, initramfs)"
python3 vm-image/build.py

step "unit and docker CLI integration tests"
cargo test --workspace

step "docker-py tests"
target/venv/bin/python -m pytest -q tests/python

step "all tests passed"
