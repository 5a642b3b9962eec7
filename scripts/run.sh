#!/usr/bin/env bash
# run.sh — set up a fresh Debian/Ubuntu machine and run Skiff's main job, as root.
#
# Today the main job is the engine running natively on this Linux host: it serves the Docker
# Engine API on $SKIFF_HOME/docker.sock (default ~/.skiff) until Ctrl-C. The VM (`skiff start`) and
# the desktop GUI arrive with later issues; this script will then boot the VM instead.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

SKIFF_HOME=${SKIFF_HOME:-$HOME/.skiff}
scripts/install-deps.sh
cargo build --release -p skiff-agent
mkdir -p "$SKIFF_HOME"
docker context inspect skiff >/dev/null 2>&1 \
  || docker context create skiff --docker "host=unix://$SKIFF_HOME/docker.sock" >/dev/null
echo "Skiff engine: export DOCKER_HOST=unix://$SKIFF_HOME/docker.sock   (or: docker context use skiff)"
exec target/release/skiff-agent serve --socket "$SKIFF_HOME/docker.sock" --root "$SKIFF_HOME/engine"
