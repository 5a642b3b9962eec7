#!/usr/bin/env bash
# registry.sh — run Debian's docker-registry (distribution 2.8) on 127.0.0.1 for tests.
# Usage:
#   scripts/registry.sh start      PORT DIR   # plain HTTP, storage + config + pidfile + log in DIR
#   scripts/registry.sh start-auth PORT DIR   # same, with htpasswd auth: user skiff / password skiffpass
#   scripts/registry.sh stop       PORT DIR   # kill the one started in DIR (PORT is ignored)
# Deletes are enabled. `start` returns once http://127.0.0.1:PORT/v2/ answers (20 s timeout).
set -euo pipefail
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2; exit 2; }
[ $# -eq 3 ] || usage
cmd=$1 port=$2 dir=$(mkdir -p "$3" && cd "$3" && pwd)
pidfile=$dir/registry.pid

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$cmd" in
start|start-auth)
  if running; then echo "registry already running (pid $(cat "$pidfile"))"; exit 0; fi
  mkdir -p "$dir/storage"
  auth=""
  if [ "$cmd" = start-auth ]; then
    htpasswd -Bbn skiff skiffpass >"$dir/htpasswd"
    auth=$'auth:\n  htpasswd:\n    realm: skiff-test\n    path: '"$dir/htpasswd"
  fi
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: skiff-test-registry
$auth
YAML
  setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then
      echo "registry on 127.0.0.1:$port (pid $(cat "$pidfile"), dir $dir${auth:+, auth skiff/skiffpass})"; exit 0
    fi
    running || { echo "registry exited; log:" >&2; tail -20 "$dir/registry.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "registry did not answer in 20 s; log: $dir/registry.log" >&2; kill "$(cat "$pidfile")"; exit 1 ;;
stop)
  if ! running; then echo "registry not running"; rm -f "$pidfile"; exit 0; fi
  pid=$(cat "$pidfile"); kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pidfile"; echo "registry stopped (pid $pid)" ;;
*) usage ;;
esac
