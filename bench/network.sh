#!/usr/bin/env bash
# bench/network.sh [MiB] — published ports, measured in one run on this machine:
#   throughput (one HTTP download of MiB MiB, default 256) and connection latency (median of 200
#   sequential connect + small request + reply) from the host, through
#     1. the host's own loopback to a server on the host              (floor)
#     2. a port published by the native engine (agent's proxy)        (native)
#     3. a port published through the VM (host daemon → vsock → agent) (VM)
#   and, for the VM's target, the guest's own loopback (wget inside the container, same server).
# The server is busybox httpd everywhere; the host-side client is the same Python loop.
# Target: published-port throughput through the VM ≥ 50% of the guest's loopback, same accelerator.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
MIB=${1:-256}
WORK=$(mktemp -d /tmp/skiff-bench-net.XXXXXX)
export SKIFF_HOME=$WORK/home DOCKER_CONFIG=$WORK/docker-config
cleanup() {
  target/release/skiff stop -t 1 >/dev/null 2>&1 || true
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "${HOST_HTTPD:-}" ] && kill "$HOST_HTTPD" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p skiff -p skiff-agent
python3 tests/fixtures/build_fixtures.py target/fixtures >/dev/null
python3 vm-image/build.py 2>/dev/null

# Host-side client: prints "MiB/s median_latency_ms" for http://127.0.0.1:$1.
client() {
  python3 - "$1" <<'EOF'
import socket, statistics, sys, time
port = int(sys.argv[1])
def get(path):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    n = 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        n += len(b)
    s.close()
    return n
deadline = time.monotonic() + 180  # the server writes its file first (slow under TCG)
while True:
    try:
        if get("/small") > 100:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server never answered")
    time.sleep(0.25)
t = time.monotonic(); n = get("/big"); dt = time.monotonic() - t
lat = []
for _ in range(200):
    t0 = time.monotonic(); get("/small"); lat.append((time.monotonic() - t0) * 1000)
print(f"{n / dt / 2**20:.1f} {statistics.median(lat):.3f}")
EOF
}
SERVE="mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count=$MIB 2>/dev/null && echo ok > /www/small && httpd -f -p 80 -h /www"
# Inside a container: the guest's own loopback, the same download with wget (prints MiB/s).
LOOPBACK="
ms() { read -r up _ < /proc/uptime; f=\${up#*.}; f=\${f#0}; echo \$(( \${up%.*} * 1000 + 10 * f )); }
t0=\$(ms); wget -qO /dev/null http://127.0.0.1/big; t1=\$(ms)
echo \$(( $MIB * 1000 / (t1 - t0 + 1) ))"

# 1. floor: busybox httpd on the host's loopback.
mkdir -p "$WORK/www" && dd if=/dev/zero of="$WORK/www/big" bs=1M count="$MIB" 2>/dev/null && echo ok >"$WORK/www/small"
FLOOR_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
busybox httpd -f -p "127.0.0.1:$FLOOR_PORT" -h "$WORK/www" & HOST_HTTPD=$!
read -r floor_tp floor_lat < <(client "$FLOOR_PORT")

# 2. native engine.
target/release/skiff-agent serve --socket "$WORK/agent.sock" --root "$WORK/agent" --bridge skiffbench0 2>"$WORK/agent.log" &
AGENT_PID=$!
for _ in $(seq 100); do [ -S "$WORK/agent.sock" ] && break; sleep 0.05; done
nd() { DOCKER_HOST=unix://$WORK/agent.sock docker "$@"; }
nd load -i target/fixtures/busybox.tar >/dev/null
NPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nd run -d --name srv -p "$NPORT:80" busybox sh -c "$SERVE" >/dev/null
read -r native_tp native_lat < <(client "$NPORT")
native_loop=$(nd exec srv sh -c "$LOOPBACK")
nd rm -f srv >/dev/null

# 3. through the VM.
target/release/skiff start --cpus 2 --memory 2048 >/dev/null 2>&1
accel=$(target/release/skiff status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
vd() { DOCKER_HOST=unix://$SKIFF_HOME/docker.sock docker "$@"; }
vd load -i target/fixtures/busybox.tar >/dev/null
VPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
vd run -d --name srv -p "$VPORT:80" busybox sh -c "$SERVE" >/dev/null
read -r vm_tp vm_lat < <(client "$VPORT")
vm_loop=$(vd exec srv sh -c "$LOOPBACK")

r() { awk -v a="$1" -v b="$2" 'BEGIN{ printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "== published ports: $MIB MiB download + median of 200 connections (VM: $accel, 2 vCPUs)"
printf '%-44s %12s %14s\n' "path" "MiB/s" "latency (ms)"
printf '%-44s %12s %14s\n' "host loopback (floor)" "$floor_tp" "$floor_lat"
printf '%-44s %12s %14s\n' "native: published port (agent proxy)" "$native_tp" "$native_lat"
printf '%-44s %12s %14s\n' "native: container's own loopback (wget)" "$native_loop" "-"
printf '%-44s %12s %14s\n' "VM: published port (daemon → vsock → agent)" "$vm_tp" "$vm_lat"
printf '%-44s %12s %14s\n' "VM: guest container's loopback (wget)" "$vm_loop" "-"
echo
echo "native published / host loopback: throughput $(r "$native_tp" "$floor_tp")×, latency $(r "$native_lat" "$floor_lat")×"
echo "VM published / host loopback:     throughput $(r "$vm_tp" "$floor_tp")×, latency $(r "$vm_lat" "$floor_lat")×"
echo "VM published / guest loopback:    throughput $(r "$vm_tp" "$vm_loop")×   (target ≥ 0.50)"
source bench/targets.sh
target "VM published port / guest loopback: throughput" "$(r "$vm_tp" "$vm_loop")" ">=" 0.5
target "VM / native published port: connection latency" "$(r "$vm_lat" "$native_lat")" "<=" 2
targets_summary
