#!/usr/bin/env bash
# run.sh — set up a fresh Debian/Ubuntu machine and run Skiff's main job, as root: install the
# dependencies, build `skiff` and the guest image, boot the VM (`skiff start`) and leave it running
# with the Docker socket at $SKIFF_HOME/docker.sock (default ~/.skiff) and a `skiff` docker context.
# Stop it with `target/release/skiff stop`. (The desktop GUI arrives with a later issue.)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

scripts/install-deps.sh
cargo build --release -p skiff
python3 vm-image/build.py
target/release/skiff start "$@"
