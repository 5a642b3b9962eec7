#!/usr/bin/env bash
# bench/remote.sh — the engine reached through a stdio transport, next to its Unix socket, in one
# run (alternating, medians): `docker version` and `docker run --rm busybox true` over
#   unix   the engine's own socket (the baseline),
#   stdio  `skiff stdio-endpoint`: each connection carried by a `skiff-agent dial-stdio` process
#          (what the Windows back end does through wsl.exe), target ≤ 1.2× the socket,
#   ssh    `docker -H ssh://root@127.0.0.1` (a private sshd; the remote `docker` is skiff-agent
#          answering dial-stdio), reported.
# Usage: bench/remote.sh [ROUNDS]   (default 15)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
ROUNDS=${1:-15}
WORK=$(mktemp -d /tmp/skiff-bench-remote.XXXXXX)
SSHD_PID="" ENDPOINT_PID="" AGENT_PID=""
cleanup() {
  DOCKER_HOST=unix://$WORK/engine.sock docker rm -f $(DOCKER_HOST=unix://$WORK/engine.sock docker ps -aq) >/dev/null 2>&1 || true
  for p in $SSHD_PID $ENDPOINT_PID $AGENT_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p skiff-agent -p skiff
python3 tests/fixtures/build_fixtures.py target/fixtures >/dev/null
AGENT=$PWD/target/release/skiff-agent
target/release/skiff-agent serve --socket "$WORK/engine.sock" --root "$WORK/state" 2>"$WORK/agent.log" &
AGENT_PID=$!
for _ in $(seq 100); do [ -S "$WORK/engine.sock" ] && break; sleep 0.05; done
target/release/skiff stdio-endpoint --listen "$WORK/stdio.sock" -- "$AGENT" dial-stdio --socket "$WORK/engine.sock" >/dev/null 2>&1 &
ENDPOINT_PID=$!

# A private sshd on 127.0.0.1: its own keys; the session's PATH starts with a `docker` that is
# skiff-agent; the client's ssh (first on the docker CLI's PATH) uses the bench's key.
mkdir -p "$WORK/ssh/remote-bin" "$WORK/ssh/client-bin" /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$WORK/ssh/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$WORK/ssh/client_key"
cp "$WORK/ssh/client_key.pub" "$WORK/ssh/authorized_keys"
ln -s "$AGENT" "$WORK/ssh/remote-bin/docker"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/ssh/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/ssh/host_key
AuthorizedKeysFile $WORK/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
PidFile $WORK/ssh/sshd.pid
SetEnv PATH=$WORK/ssh/remote-bin:/usr/bin:/bin
CONF
printf 'Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' \
  "$WORK/ssh/client_key" >"$WORK/ssh/ssh_config"
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$WORK/ssh/ssh_config" >"$WORK/ssh/client-bin/ssh"
chmod +x "$WORK/ssh/client-bin/ssh"
/usr/sbin/sshd -D -e -f "$WORK/ssh/sshd_config" 2>"$WORK/ssh/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.05; done

unix() { DOCKER_HOST=unix://$WORK/engine.sock docker "$@"; }
stdio() { DOCKER_HOST=unix://$WORK/stdio.sock docker "$@"; }
ssh_() { PATH=$WORK/ssh/client-bin:$PATH DOCKER_HOST=ssh://root@127.0.0.1:$PORT$WORK/engine.sock docker "$@"; }
unix load -i target/fixtures/busybox.tar >/dev/null
for t in unix stdio ssh_; do $t run --rm busybox true >/dev/null; done   # warm caches

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A T
time_it() { local k=$1; shift; local s; s=$(now); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; T[$k]+="$(( ($(now) - s) / 10000 )) "; }
for _ in $(seq "$ROUNDS"); do
  for t in unix stdio ssh_; do
    time_it "$t.version" $t version
    time_it "$t.run" $t run --rm busybox true
  done
done
med() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
ms() { awk -v v="$1" 'BEGIN{printf "%.1f", v/100}'; }
printf '\n%-32s %10s %10s %10s %12s %10s\n' "operation (median of $ROUNDS, ms)" "unix" "stdio" "ssh" "stdio/unix" "ssh/unix"
for op in version run; do
  u=$(med unix.$op) s=$(med stdio.$op) h=$(med ssh_.$op)
  r=$(awk -v a="$s" -v b="$u" 'BEGIN{printf "%.2f", a/b}')
  rh=$(awk -v a="$h" -v b="$u" 'BEGIN{printf "%.2f", a/b}')
  met=$(awk -v r="$r" 'BEGIN{print (r <= 1.2) ? "met" : "MISSED"}')
  label=$([ $op = version ] && echo "docker version" || echo "docker run --rm busybox true")
  printf '%-32s %10s %10s %10s %8sx %-4s %9sx\n' "$label" "$(ms "$u")" "$(ms "$s")" "$(ms "$h")" "$r" "$met" "$rh"
done
echo "target: stdio transport ≤ 1.2× the Unix socket; ssh reported (it adds an ssh handshake per connection)"
