#!/usr/bin/env bash
# run.sh — set up a fresh Debian/Ubuntu machine and run Skiff's main job, as root: install the
# dependencies, build `skiff` and the guest image, build the test images README's next steps load
# (target/fixtures), boot the VM (`skiff start`) and leave it running with the Docker socket at
# $SKIFF_HOME/docker.sock (default ~/.skiff) and a `skiff` docker context; where a display exists,
# start the desktop app too. Stop the VM with `target/release/skiff stop`.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

scripts/install-deps.sh
display="${DISPLAY:-}${WAYLAND_DISPLAY:-}"
if [ -n "$display" ]; then
  cargo build --release -p skiff -p skiff-desktop
else
  cargo build --release -p skiff
fi
python3 vm-image/build.py
python3 tests/fixtures/build_fixtures.py target/fixtures
target/release/skiff start "$@"

if [ -n "$display" ]; then
  home="${SKIFF_HOME:-$HOME/.skiff}"
  mkdir -p "$home/logs"
  setsid target/release/skiff-desktop >>"$home/logs/desktop.log" 2>&1 </dev/null &
  echo "skiff-desktop started (log: $home/logs/desktop.log)"
else
  echo "no display: the desktop app was not started (run target/release/skiff-desktop in a desktop session)"
fi
cat <<'NEXT'

Next:
    docker context use skiff
    docker load -i target/fixtures/busybox.tar && docker run --rm -it busybox sh
NEXT
