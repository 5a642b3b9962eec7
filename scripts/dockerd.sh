#!/usr/bin/env bash
# dockerd.sh — run Debian's dockerd 20.10 (+ its own containerd) beside Skiff, for
# side-by-side benchmarks and to validate fixtures. All state lives under DIR.
# Usage:
#   scripts/dockerd.sh start DIR   # returns once `docker version` answers on DIR/docker.sock (60 s timeout)
#   scripts/dockerd.sh stop DIR    # kill containers, SIGTERM dockerd by pidfile, wait, then remove leftovers:
#                                  # shims/mounts under DIR, the docker0, br-<id> and docker_gwbridge (swarm)
#                                  # bridges, Docker's iptables rules and chains, and restore the FORWARD
#                                  # policy (dockerd sets DROP, which would also drop Skiff's forwarded
#                                  # container traffic)
# Then: DOCKER_HOST=unix://DIR/docker.sock docker ...
set -euo pipefail
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1 dir=$(mkdir -p "$2" && cd "$2" && pwd)
pidfile=$dir/dockerd.pid sock=$dir/docker.sock
export DOCKER_HOST=unix://$sock

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# Remove the rules and chains dockerd added to iptables (filter, nat); it never does so itself.
iptables_cleanup() {
  command -v iptables-save >/dev/null || return 0
  local t rule chain n=0
  for t in filter nat; do
    while read -r rule; do
      eval "iptables -t $t -D ${rule#-A }" 2>/dev/null && n=$((n + 1))
    done < <(iptables-save -t "$t" | grep -E '^-A ' | grep -E 'DOCKER|docker0|docker_gwbridge|br-[0-9a-f]{12}')
    for chain in $(iptables-save -t "$t" | sed -n 's/^:\(DOCKER[^ ]*\) .*/\1/p'); do
      iptables -t "$t" -F "$chain" && iptables -t "$t" -X "$chain"
    done
  done
  [ -f "$dir/forward-policy" ] && iptables -P FORWARD "$(cat "$dir/forward-policy")"
  echo "iptables: removed $n Docker rules, FORWARD policy $(iptables -S FORWARD | sed -n 's/^-P FORWARD //p')"
}

case "$cmd" in
start)
  if running; then echo "dockerd already running (pid $(cat "$pidfile")), DOCKER_HOST=$DOCKER_HOST"; exit 0; fi
  # containerd's socket lives at DIR/exec/containerd/containerd.sock: unix paths max 107 bytes.
  [ ${#dir} -le 70 ] || { echo "DIR path too long for unix sockets: $dir" >&2; exit 1; }
  rm -f "$pidfile"
  # dockerd sets the FORWARD policy to DROP: remember the policy to restore it on stop.
  [ -f "$dir/forward-policy" ] || iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p' >"$dir/forward-policy"
  setsid dockerd --data-root "$dir/data" --exec-root "$dir/exec" --host "$DOCKER_HOST" \
    --pidfile "$pidfile" >"$dir/dockerd.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 600); do
    if docker version >/dev/null 2>&1; then
      echo "dockerd $(docker version -f '{{.Server.Version}}') up (pid $pid), DOCKER_HOST=$DOCKER_HOST"; exit 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "dockerd exited; log:" >&2; tail -20 "$dir/dockerd.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "dockerd did not answer in 60 s; log: $dir/dockerd.log" >&2; kill "$pid"; exit 1 ;;
stop)
  if running; then
    # A throwaway daemon: kill containers now rather than wait their stop timeouts.
    ids=$(docker ps -q 2>/dev/null || true); [ -z "$ids" ] || docker kill $ids >/dev/null 2>&1 || true
    pid=$(cat "$pidfile"); kill "$pid"
    # dockerd stops its containers and its containerd before exiting.
    for _ in $(seq 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { echo "dockerd did not exit in 40 s, SIGKILL" >&2; kill -9 "$pid"; }
    echo "dockerd stopped (pid $pid)"
  else
    echo "dockerd not running"
  fi
  rm -f "$pidfile"
  # Leftovers: containerd / shims started for this DIR, mounts under DIR, the bridges (docker_gwbridge: swarm).
  for p in $(pgrep -f "containerd.*$dir/" || true); do
    echo "killing leftover $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-70) (pid $p)"
    kill -9 "$p" 2>/dev/null || true
  done
  awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" && echo "unmounted $m"
  done
  for br in $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep -xE 'docker0|docker_gwbridge|br-[0-9a-f]{12}'); do
    ip link del "$br" && echo "removed bridge $br"
  done
  iptables_cleanup ;;
*) usage ;;
esac
