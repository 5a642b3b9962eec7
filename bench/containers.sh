#!/usr/bin/env bash
# bench/containers.sh — container operations, Skiff vs Debian's dockerd 20.10 (+containerd, runc),
# side by side in one run (alternating engines, medians):
#   docker run --rm busybox true   (CLI to exit)
#   docker exec c true
#   docker ps with 50 running containers
#   docker logs of 100k lines
#   engine memory: idle, and with 50 running containers (dockerd: dockerd+containerd+shims)
# podman+crun is not measured: crun refuses to start on this host's v1/v2 cgroup hybrid.
# Both engines keep their state on a fresh journaled ext4 (bench/lib.sh scratch_fs), as the VM's
# data disk and most Linux installs do: these machines' root file system (no journal, online
# discard, an inode allocator that steps over recently deleted inodes) makes each file deleted
# and created cost ~0.1 ms, which `run --rm` does for ~15 files per container.
# Usage (as root, after scripts/install-deps.sh and the fixtures): bench/containers.sh [RUNS]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
RUNS=${1:-10}
WORK=$(mktemp -d /tmp/skiff-bench-XXXX)
FIX=target/fixtures
source bench/lib.sh
source bench/targets.sh
scratch_fs
start_engines
cleanup() {
  stop_engines
  awk -v d="$WORK/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "${WORK:?}"/*
  scratch_fs_done
  rm -rf "$WORK"
}
trap cleanup EXIT

rss_kib() { local t=0 v; for p in "$@"; do v=$(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null); t=$((t + ${v:-0})); done; echo $t; }
dockerd_pids() { pgrep -f "$WORK/dockerd" | tr '\n' ' '; pgrep -f containerd-shim | tr '\n' ' '; }
# Skiff's engine: the agent and the runtime child it holds ready after a start (runtime/ready.rs).
skiff_pids() { echo "$SKIFF_PID" $(pgrep -P "$SKIFF_PID" -f 'skiff-agent ready' || true); }


for e in dockerd skiff; do
  $e load -i "$FIX/busybox.tar" >/dev/null
  $e run -d --name execbox busybox sleep 100000 >/dev/null
  $e run --name logger busybox seq 1 100000 >/dev/null
done
sleep 1
MEM_ACTIVE_SKIFF=$(rss_kib $(skiff_pids))
MEM_ACTIVE_DOCKERD=$(rss_kib $(dockerd_pids))
# Idle: the ready runtime child leaves after 60 s without a start or exec (both engines rest as long).
for _ in $(seq 150); do [ -z "$(pgrep -P "$SKIFF_PID" -f 'skiff-agent ready')" ] && break; sleep 0.5; done
MEM_IDLE_SKIFF=$(rss_kib $(skiff_pids))
MEM_IDLE_DOCKERD=$(rss_kib $(dockerd_pids))

for r in $(seq "$RUNS"); do
  for e in dockerd skiff; do
    time_it $e run $e run --rm busybox true
    time_it $e exec $e exec execbox true
    time_it $e logs $e logs logger
  done
done
for e in dockerd skiff; do
  for i in $(seq 50); do $e run -d busybox sleep 100000 >/dev/null; done
done
sleep 2
MEM_50_SKIFF=$(rss_kib $(skiff_pids))
MEM_50_DOCKERD=$(rss_kib $(dockerd_pids))
sock_of() { if [ "$1" = skiff ]; then echo "$SKIFF_SOCK"; else echo "$WORK/dockerd/docker.sock"; fi; }
for r in $(seq "$RUNS"); do
  for e in dockerd skiff; do
    time_it $e ps $e ps
    # The engine's part alone (the CLI's own start-up is the same for both).
    time_it $e ps_api curl -sf --unix-socket "$(sock_of $e)" http://engine/v1.41/containers/json
  done
  time_it cli floor docker --version
done
# The engines' own part of `docker ps`: the same request from a client with no start-up cost.
API=$(python3 bench/api_latency.py /v1.41/containers/json $((RUNS * 10)) dockerd="$(sock_of dockerd)" skiff="$(sock_of skiff)")
API_DOCKERD=$(awk '$1 == "dockerd" {print $2}' <<<"$API")
API_SKIFF=$(awk '$1 == "skiff" {print $2}' <<<"$API")

printf '\n%-34s %12s %12s %10s\n' "operation (median, ms)" "dockerd" "skiff" "speed-up"
for l in run exec ps ps_api logs; do
  d=$(median_of dockerd.$l)
  s=$(median_of skiff.$l)
  printf '%-34s %12.1f %12.1f %9.2fx\n' "$l" "$(awk -v v="$d" 'BEGIN{print v/10}')" "$(awk -v v="$s" 'BEGIN{print v/10}')" "$(ratio "$d" "$s")"
done
printf '%-34s %12.2f %12.2f %9.2fx\n' "ps_engine (GET /containers/json)" "$API_DOCKERD" "$API_SKIFF" "$(ratio "$API_DOCKERD" "$API_SKIFF")"
printf '%-34s %12s %12s\n' "engine RSS 1 s after a start (MiB)" "$(awk -v k="$MEM_ACTIVE_DOCKERD" 'BEGIN{printf "%.1f", k/1024}')" "$(awk -v k="$MEM_ACTIVE_SKIFF" 'BEGIN{printf "%.1f", k/1024}')"
printf '%-34s %12s %12s\n' "engine RSS idle (MiB)" "$(awk -v k="$MEM_IDLE_DOCKERD" 'BEGIN{printf "%.1f", k/1024}')" "$(awk -v k="$MEM_IDLE_SKIFF" 'BEGIN{printf "%.1f", k/1024}')"
printf '%-34s %12s %12s\n' "engine RSS, 50 running (MiB)" "$(awk -v k="$MEM_50_DOCKERD" 'BEGIN{printf "%.1f", k/1024}')" "$(awk -v k="$MEM_50_SKIFF" 'BEGIN{printf "%.1f", k/1024}')"
printf '%-34s %12s %12s\n' "per extra running container (KiB)" "$(( (MEM_50_DOCKERD - MEM_IDLE_DOCKERD) / 50 ))" "$(( (MEM_50_SKIFF - MEM_IDLE_SKIFF) / 50 ))"
echo "(runs: $RUNS each; logs = 100,000 lines; idle = 2 containers present, Skiff's after its ready runtime child left"
echo " (60 s without a start; 1 s after one, the engine holds it: the line above); ps_api = GET /containers/json with curl;"
echo " ps_engine = the same request from a client without start-up cost, $((RUNS * 10)) each;"
echo " the docker CLI's own start-up, \`docker --version\`: $(awk -v v="$(median_of cli.floor)" 'BEGIN{print v/10}') ms, in every CLI figure:"
echo " even an engine that took no time could make \`docker ps\` at most $(awk -v d="$(median_of dockerd.ps)" -v c="$(median_of cli.floor)" 'BEGIN{printf "%.2f", d / c}')x faster than dockerd's)"
target "docker run --rm: speed-up over dockerd" "$(ratio "$(median_of dockerd.run)" "$(median_of skiff.run)")" ">=" 10
target "docker ps (50 running): speed-up" "$(ratio "$(median_of dockerd.ps)" "$(median_of skiff.ps)")" ">=" 2
target "docker logs (100k lines): speed-up" "$(ratio "$(median_of dockerd.logs)" "$(median_of skiff.logs)")" ">=" 3
target "engine RSS idle (MiB)" "$(awk -v k="$MEM_IDLE_SKIFF" 'BEGIN{printf "%.1f", k/1024}')" "<=" 15
target "engine RSS per running container (MiB)" "$(awk -v a="$MEM_50_SKIFF" -v b="$MEM_IDLE_SKIFF" 'BEGIN{printf "%.2f", (a-b)/50/1024}')" "<=" 1
targets_summary
