#!/usr/bin/env bash
# bench/desktop.sh [RUNS] — the desktop app (release build), in one run on this machine:
#  1. cold start of the window (Xvfb) to the first rendered container list, with 50 containers
#     (the front end reports when its list is on screen; median of RUNS, default 3)
#  2. memory of the app's processes (skiff-desktop + its WebKit processes) with the 50 listed
#  3. size of the release binary and of the .deb bundle (`tauri build --bundles deb`)
# Targets: first paint < 1 s, memory < 150 MiB, binary < 20 MiB. Each cold start of the app is
# paired with one of a bare WebKitGTK window (bench/webkit_floor.c) as the floor, same run, and
# first render and memory within 1.1× of the floor's are targets too; a third window, the floor
# with the app's own WebKit settings, is shown for the record (how much the page itself costs).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
RUNS=${1:-3}
WORK=$(mktemp -d /tmp/skiff-bench-desktop.XXXXXX)
cleanup() {
  [ -n "${AGENT_PID:-}" ] && { DOCKER_HOST=unix://$WORK/docker.sock docker rm -f $(DOCKER_HOST=unix://$WORK/docker.sock docker ps -aq) >/dev/null 2>&1 || true; kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p skiff-agent
# The .deb build also produces the release binary (with tauri/custom-protocol, as shipped).
# The Tauri CLI checks that frontendDist exists before cargo runs build.rs, which fills it.
mkdir -p target/ui-dist
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

# One cold start under Xvfb: launch time, the line the window prints when it has rendered, and
# the memory of its process tree 2 s later. Prints "launched-epoch-ms T" and "mem PSS USS".
cold_start() { # OUT COMMAND...
  local out=$1; shift
  SKIFF_DESKTOP_BENCH=1 xvfb-run -a -s "-screen 0 1280x800x24" bash -c '
    eval "$1"; out=$2; shift 2
    echo "launched-epoch-ms $(date +%s%3N)"
    "$@" >"$out" 2>/dev/null & app=$!
    for _ in $(seq 300); do grep -qs rendered-epoch-ms "$out" && break; sleep 0.05; done
    sleep 2
    echo "mem $(tree_rss $app)"
    kill $app; wait $app 2>/dev/null || true' _ "$(declare -f tree_rss)" "$out" "$@"
}

# The app and, side by side, the floor: a bare WebKitGTK window (bench/webkit_floor.c: the same
# WebKit and GTK Tauri uses, no Rust, no IPC, no engine) showing a static 50-row table.
mkdir -p target/bench
cc -O2 -o target/bench/webkit-floor bench/webkit_floor.c $(pkg-config --cflags --libs webkit2gtk-4.1)
export WEBKIT_DISABLE_COMPOSITING_MODE=1
# The app tunes WebKit below its defaults (app/desktop/src/main.rs: no JIT, no DMA-BUF renderer);
# the floor keeps them. For the record, a third window: the floor with the app's settings.
APP_WEBKIT=(JSC_useJIT=0 WEBKIT_DISABLE_DMABUF_RENDERER=1)
times=() floor_times=() same_times=() splits=()
for r in $(seq "$RUNS"); do
  for who in app floor same; do
    case $who in
      app) res=$(cold_start "$WORK/$who$r.out" "$BIN" --view containers) ;;
      floor) res=$(cold_start "$WORK/$who$r.out" target/bench/webkit-floor) ;;
      same) res=$(cold_start "$WORK/$who$r.out" env "${APP_WEBKIT[@]}" target/bench/webkit-floor) ;;
    esac
    t0=$(echo "$res" | awk '/^launched-epoch-ms/ {print $2}')
    t1=$(awk '/rendered-epoch-ms/ {print $NF}' "$WORK/$who$r.out")
    [ -n "$t1" ] || { echo "run $r: the $who window never reported its first render"; exit 1; }
    read -r pss uss < <(echo "$res" | awk '/^mem/ {print $2, $3}')
    case $who in
      app)
        times+=("$((t1 - t0))") mem=$pss app_uss=$uss
        # first-render-ms N containers N page-start-ms A page-to-render-ms B ipc-ms C list-from D:
        # native start + page, and who drew the list (the backend into index.html, or the page).
        splits+=("$(awk '/first-render-ms/ {print $6 "+" $8 "(" $12 ")"}' "$WORK/$who$r.out")") ;;
      floor) floor_times+=("$((t1 - t0))") floor_mem=$pss floor_uss=$uss ;;
      same) same_times+=("$((t1 - t0))") same_mem=$pss ;;
    esac
  done
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
median=$(med "${times[@]}") floor_median=$(med "${floor_times[@]}") same_median=$(med "${same_times[@]}")
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b / 1048576}'; }
kib2mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; }

echo "== desktop app (release), 50 containers listed, median of $RUNS cold starts; floor: a bare WebKitGTK window"
printf '%-48s %s\n' "launch → first rendered container list" "$median ms  (runs: ${times[*]}; target < 1000 ms)"
printf '%-48s %s\n' "  in the app: native start-up + the page (list by)" "${splits[*]} ms"
printf '%-48s %s\n' "floor: launch → static 50-row page rendered" "$floor_median ms  (runs: ${floor_times[*]})"
printf '%-48s %s\n' "  ratio app / floor" "$(ratio "$median" "$floor_median")×"
printf '%-48s %s\n' "memory: skiff-desktop + WebKit processes (PSS)" "$(kib2mib "$mem") MiB  (target < 150 MiB)"
printf '%-48s %s\n' "  of which private to them (USS)" "$(kib2mib "$app_uss") MiB"
printf '%-48s %s\n' "floor memory (PSS / USS)" "$(kib2mib "$floor_mem") / $(kib2mib "$floor_uss") MiB  (ratio PSS $(ratio "$mem" "$floor_mem")×)"
printf '%-48s %s\n' "floor with the app's WebKit settings" "$same_median ms, $(kib2mib "$same_mem") MiB PSS  (app / it: $(ratio "$median" "$same_median")×, $(ratio "$mem" "$same_mem")×; ${APP_WEBKIT[*]})"
printf '%-48s %s\n' "release binary" "$(mib "$(stat -c %s "$BIN")") MiB  (target < 20 MiB)"
printf '%-48s %s\n' ".deb bundle" "$(mib "$(stat -c %s "$DEB")") MiB  ($(basename "$DEB"))"
source bench/targets.sh
target "first render: app / bare WebKitGTK window" "$(ratio "$median" "$floor_median")" "<=" 1.1
target "memory (PSS): app / bare WebKitGTK window" "$(ratio "$mem" "$floor_mem")" "<=" 1.1
target "release binary (MiB)" "$(mib "$(stat -c %s "$BIN")")" "<=" 20
targets_summary
