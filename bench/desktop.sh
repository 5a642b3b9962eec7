#!/usr/bin/env bash
# bench/desktop.sh [RUNS] — the desktop app (release build), in one run on this machine:
#  1. cold start of the window (Xvfb) to the first rendered container list, with 50 containers
#     (the front end reports when its list is on screen; median of RUNS, default 3)
#  2. memory of the app's processes (skiff-desktop + its WebKit processes) with the 50 listed
#  3. size of the release binary and of the .deb bundle (`tauri build --bundles deb`)
# Targets: first paint < 1 s, memory < 150 MiB, binary < 20 MiB.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
RUNS=${1:-3}
WORK=$(mktemp -d /tmp/skiff-bench-desktop.XXXXXX)
cleanup() {
  [ -n "${AGENT_PID:-}" ] && { DOCKER_HOST=unix://$WORK/docker.sock docker rm -f $(DOCKER_HOST=unix://$WORK/docker.sock docker ps -aq) >/dev/null 2>&1 || true; kill "$AGENT_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p skiff-agent
# The .deb build also produces the release binary (with tauri/custom-protocol, as shipped).
(cd app/desktop && ../../ui/node_modules/.bin/tauri build --bundles deb >"$WORK/tauri-build.log" 2>&1) ||
  { tail -30 "$WORK/tauri-build.log"; exit 1; }
BIN=target/release/skiff-desktop
DEB=$(ls -t target/release/bundle/deb/*.deb | head -1)

target/release/skiff-agent serve --socket "$WORK/docker.sock" --root "$WORK/root" --bridge skiffbenchD 2>"$WORK/agent.log" &
AGENT_PID=$!
for _ in $(seq 200); do [ -S "$WORK/docker.sock" ] && break; sleep 0.05; done
export DOCKER_HOST=unix://$WORK/docker.sock
docker load -q -i target/fixtures/busybox.tar >/dev/null
for i in $(seq 50); do docker run -d --name "c$i" busybox sleep 3600 >/dev/null; done

# Memory (KiB, PSS) of a process and all its descendants.
tree_rss() {
  local pids=("$1") all=() p
  while ((${#pids[@]})); do
    p=${pids[0]}; pids=("${pids[@]:1}"); all+=("$p")
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do pids+=("$c"); done
  done
  # PSS: shared pages (WebKit's libraries are mapped by every one of its processes) counted once.
  # USS: pages only these processes hold (what quitting the app would give back).
  for p in "${all[@]}"; do cat /proc/"$p"/smaps_rollup 2>/dev/null; done |
    awk '/^Pss:/ {pss += $2} /^Private_(Clean|Dirty):/ {uss += $2} END {print pss + 0, uss + 0}'
}

times=() splits=()
mem=0 uss=0
for r in $(seq "$RUNS"); do
  out=$(SKIFF_DESKTOP_BENCH=1 xvfb-run -a -s "-screen 0 1280x800x24" bash -c '
    eval "$3"
    "$1" --view containers >"$2" 2>/dev/null & app=$!
    for _ in $(seq 300); do grep -q first-render-ms "$2" && break; sleep 0.05; done
    sleep 2
    echo "mem $(tree_rss $app)"
    kill $app; wait $app 2>/dev/null || true' _ "$BIN" "$WORK/run$r.out" "$(declare -f tree_rss)")
  ms=$(awk '/first-render-ms/ {print $2}' "$WORK/run$r.out")
  [ -n "$ms" ] || { echo "run $r: the window never reported its first render"; exit 1; }
  times+=("$ms")
  # first-render-ms N containers N page-start-ms A page-to-render-ms B: native start-up + page.
  splits+=("$(awk '/first-render-ms/ {print $6 "+" $8}' "$WORK/run$r.out")")
  mem=$(echo "$out" | awk '/^mem/ {print $2}')
  uss=$(echo "$out" | awk '/^mem/ {print $3}')
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b / 1048576}'; }

echo "== desktop app (release), 50 containers listed, median of $RUNS cold starts"
printf '%-48s %s\n' "first rendered container list" "$median ms  (runs: ${times[*]}; target < 1000 ms)"
printf '%-48s %s\n' "  window + web process start, then the page" "${splits[*]} ms"
printf '%-48s %s\n' "memory: skiff-desktop + WebKit processes (PSS)" "$(awk -v k="$mem" 'BEGIN{printf "%.1f", k / 1024}') MiB  (target < 150 MiB)"
printf '%-48s %s\n' "  of which private to them (USS)" "$(awk -v k="$uss" 'BEGIN{printf "%.1f", k / 1024}') MiB"
printf '%-48s %s\n' "release binary" "$(mib "$(stat -c %s "$BIN")") MiB  (target < 20 MiB)"
printf '%-48s %s\n' ".deb bundle" "$(mib "$(stat -c %s "$DEB")") MiB  ($(basename "$DEB"))"
