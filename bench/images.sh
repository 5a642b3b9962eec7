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
cargo build --release -q -p skiff-agent
python3 tests/fixtures/build_fixtures.py "$FIX" >/dev/null
python3 bench/make_many_images.py "$FIX/busybox.tar" 50 "$WORK/many.tar"

SKIFF_SOCK=$WORK/skiff.sock
target/release/skiff-agent serve --socket "$SKIFF_SOCK" --root "$WORK/skiff" 2>"$WORK/skiff.log" &
SKIFF_PID=$!
scripts/dockerd.sh start "$WORK/dockerd" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scripts/registry.sh start "$PORT" "$WORK/registry" >/dev/null
cleanup() {
  kill "$SKIFF_PID" 2>/dev/null || true
  scripts/dockerd.sh stop "$WORK/dockerd" >/dev/null 2>&1 || true
  scripts/registry.sh stop "$PORT" "$WORK/registry" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$SKIFF_SOCK" ] && break; sleep 0.05; done

skiff() { DOCKER_HOST=unix://$SKIFF_SOCK docker "$@"; }
dockerd() { DOCKER_HOST=unix://$WORK/dockerd/docker.sock docker "$@"; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A T
time_it() { # engine label command...
  local e=$1 l=$2; shift 2
  local s; s=$(now); "$@" >/dev/null; T[$e.$l]+="$(ms "$s" "$(now)") "
}
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
  d=$(echo "${T[dockerd.$l]}" | tr ' ' '\n' | grep . | median)
  s=$(echo "${T[skiff.$l]}" | tr ' ' '\n' | grep . | median)
  printf '%-28s %12s %12s %9.2fx\n' "$l" "$d" "$s" "$(awk -v d="$d" -v s="$s" 'BEGIN{print d/s}')"
done
echo "(runs: $RUNS for load/pull, $((RUNS * 4)) for images; 50 images listed; Debian fixture $(du -h "$FIX/debian.tar" | cut -f1))"
