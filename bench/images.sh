#!/usr/bin/env bash
# bench/images.sh — image operations, Skiff vs Debian's dockerd 20.10, side by side in one run.
#   1. `docker load` of the Debian minbase fixture (~121 MB, one layer)
#   2. `docker pull` of the same image from a local registry (127.0.0.1)
#   3. `docker images` with 50 images
# Each is repeated RUNS times (default 5) alternating engines; medians and ratios are printed.
# Usage (as root, after scripts/install-deps.sh and the fixtures): bench/images.sh [RUNS]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
RUNS=${1:-5}
WORK=$(mktemp -d /tmp/skiff-bench-XXXX)
FIX=target/fixtures
source bench/lib.sh
source bench/targets.sh
python3 tests/fixtures/build_fixtures.py "$FIX" >/dev/null
python3 bench/make_many_images.py "$FIX/busybox.tar" 50 "$WORK/many.tar"
start_engines
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scripts/registry.sh start "$PORT" "$WORK/registry" >/dev/null
cleanup() {
  stop_engines
  scripts/registry.sh stop "$PORT" "$WORK/registry" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

clear_images() { "$1" rmi -f $("$1" images -q | sort -u) >/dev/null 2>&1 || true; "$1" image prune -af >/dev/null 2>&1 || true; }

IMG=127.0.0.1:$PORT/bench/debian:bookworm
skiff load -i "$FIX/debian.tar" >/dev/null
skiff tag skiff-test/debian:bookworm "$IMG"
skiff push "$IMG" >/dev/null

for r in $(seq "$RUNS"); do
  for e in dockerd skiff; do
    clear_images $e
    time_it $e load $e load -i "$FIX/debian.tar"
    clear_images $e
    time_it $e pull $e pull "$IMG"
  done
done
for e in dockerd skiff; do
  clear_images $e
  $e load -i "$WORK/many.tar" >/dev/null
  $e images -q >/dev/null
done
for r in $(seq $((RUNS * 4))); do
  for e in dockerd skiff; do time_it $e images $e images; done
done

printf '\n%-28s %12s %12s %10s\n' "operation (median of runs)" "dockerd ms" "skiff ms" "speed-up"
for l in load pull images; do
  d=$(median_of dockerd.$l)
  s=$(median_of skiff.$l)
  printf '%-28s %12.1f %12.1f %9.2fx\n' "$l" "$(awk -v v="$d" 'BEGIN{print v/10}')" "$(awk -v v="$s" 'BEGIN{print v/10}')" "$(ratio "$d" "$s")"
done
echo "(runs: $RUNS for load/pull, $((RUNS * 4)) for images; 50 images listed; Debian fixture $(du -h "$FIX/debian.tar" | cut -f1))"
target "docker load: speed-up over dockerd" "$(ratio "$(median_of dockerd.load)" "$(median_of skiff.load)")" ">=" 3
target "registry pull: speed-up over dockerd" "$(ratio "$(median_of dockerd.pull)" "$(median_of skiff.pull)")" ">=" 3
targets_summary
