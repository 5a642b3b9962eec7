#!/usr/bin/env bash
# test.sh — the whole test suite, from a fresh clone on Debian/Ubuntu, as root.
# Installs what it needs (scripts/install-deps.sh), checks formatting and lints, builds, builds the
# offline test fixtures (cached under target/fixtures) and the guest image (target/vm-image), builds the
# host side for Windows (tested under Wine) and type-checks it for macOS, then runs
# the unit tests, the docker CLI integration tests (tests/tests, including the VM under QEMU), the
# docker-py and docker-compose tests (tests/python) and the desktop app's end-to-end tests
# (tests/ui: Chromium against the app's backend, then the real Tauri window under Xvfb).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

step() { printf '\n== %s  [%s]\n' "$*" "$(date +%T)"; }

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

step "guest image (vm-image/build.py: agent, kernel, initramfs)"
python3 vm-image/build.py

step "arm64 guest image (vm-image/build.py --arch arm64: the agent cross-built)"
python3 vm-image/build.py --arch arm64

step "host side for Windows (cross-built with mingw-w64, unit tests and skiff.exe under Wine)"
scripts/windows-test.sh

step "host side for macOS (type-checked for aarch64-apple-darwin: no Apple linker here)"
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 cargo check -q -Zbuild-std=std,panic_abort --target aarch64-apple-darwin -p skiff --all-targets

step "unit and docker CLI integration tests"
cargo test --workspace

step "docker-py and docker-compose tests"
target/venv/bin/python -m pytest -q tests/python

step "desktop app end to end (tests/ui/run.sh)"
tests/ui/run.sh

step "all tests passed"
