#!/usr/bin/env bash
# bench/vm.sh [N] — the Skiff VM, measured in one run on this machine's accelerator:
#  1. boot: `skiff start` → a working `docker version`, next to the floor: the same kernel, QEMU
#     command line and accelerator reaching a trivial /init (busybox, vm-image/trivial-initramfs.sh)
#  2. `docker run --rm busybox true` through the VM vs the same engine natively
#  3. host memory of Skiff's processes besides QEMU (daemon, vhost-device-vsock, virtiofsd), and QEMU's
#  4. the guest's used memory after boot (as `free` counts it) and its shmem (initramfs files)
#  5. `docker run --rm` of an emulated foreign-architecture busybox vs a native one (natively)
# Medians of N runs (default 3). Needs root (the native engine), QEMU and vhost-device-vsock.
# SKIFF_BENCH_ARCH=arm64 measures the arm64 guest instead (emulated under TCG on amd64 machines):
# its boot next to its own floor (the same arm64 kernel and QEMU reaching an arm64 busybox /init).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
N=${1:-3}
WORK=$(mktemp -d /tmp/skiff-bench-vm.XXXXXX)
export SKIFF_HOME=$WORK/home DOCKER_CONFIG=$WORK/docker-config
source bench/lib.sh
source bench/targets.sh

cleanup() {
  target/release/skiff stop -t 1 >/dev/null 2>&1 || true
  [ -n "${SKIFF_PID:-}" ] && kill "$SKIFF_PID" 2>/dev/null || true
  for h in ${FLOOR_HELPERS:-}; do kill "$h" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p skiff -p skiff-agent
python3 tests/fixtures/build_fixtures.py target/fixtures >/dev/null
ARCH=${SKIFF_BENCH_ARCH:-}
if [ -n "$ARCH" ]; then
  python3 vm-image/build.py --arch "$ARCH" 2>/dev/null
  TRIVIAL_BUSYBOX=target/fixtures/work/busybox-$ARCH
  [ "$ARCH" = amd64 ] && TRIVIAL_BUSYBOX=/bin/busybox
else
  python3 vm-image/build.py 2>/dev/null
  TRIVIAL_BUSYBOX=/bin/busybox
fi
vm-image/trivial-initramfs.sh "$WORK/trivial.img" poweroff "$TRIVIAL_BUSYBOX"
vmdocker() { DOCKER_HOST=unix://$SKIFF_HOME/docker.sock docker "$@"; }
ms() { echo $(( ($(now) - $1) / 1000000 )); }

# A first start creates the disk and settles the accelerator probe (cached per host boot): not timed.
target/release/skiff start --cpus 2 --memory 2048 ${ARCH:+--arch "$ARCH"} >/dev/null 2>"$WORK/start.err"
accel=$(target/release/skiff status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')
qemu_pid=$(cat "$SKIFF_HOME/run/qemu.pid")
mapfile -d '' QEMU_ARGS < "/proc/$qemu_pid/cmdline"
vmdocker load -i target/fixtures/busybox.tar >/dev/null
target/release/skiff stop -t 1 >/dev/null

echo "== boot (${ARCH:-host architecture} guest, $accel, 2 vCPUs, 2048 MiB), median of $N"
starts=() floors=()
for _ in $(seq "$N"); do
  s=$(now)
  target/release/skiff start >/dev/null 2>&1
  vmdocker version >/dev/null
  starts+=("$(ms "$s")")
  target/release/skiff stop -t 1 >/dev/null
done
# The floor: QEMU exactly as Skiff runs it, with the trivial initramfs and no skiff.* parameters.
floor_run=$WORK/floor
FLOOR_HELPERS=
for _ in $(seq "$N"); do
  rm -rf "$floor_run" && mkdir -p "$floor_run"
  args=()
  skip=0
  for ((i = 1; i < ${#QEMU_ARGS[@]}; i++)); do
    a=${QEMU_ARGS[$i]}
    case "$a" in
      */initramfs.img) a=$WORK/trivial.img ;;
      console=tty*) a="${a%% *} quiet panic=-1" ;;
      file:*console.log) a=file:$floor_run/console.log ;;
      unix:*qmp.sock*) a=unix:$floor_run/qmp.sock,server=on,wait=off ;;
      */qemu.pid) a=$floor_run/qemu.pid ;;
      socket,id=vsock0,*) a=socket,id=vsock0,path=$floor_run/vhost-vsock.sock ;;
      socket,id=fs*,path=*)
        # The same virtio-fs device, backed by its own virtiofsd.
        fs_sock=$floor_run/${a#socket,id=}; fs_sock=${fs_sock%%,*}.sock
        a="${a%%,path=*},path=$fs_sock"
        virtiofsd --shared-dir "$WORK" --socket-path "$fs_sock" --sandbox namespace --cache never >/dev/null 2>&1 &
        FLOOR_HELPERS+=" $!"
        for _ in $(seq 200); do [ -S "$fs_sock" ] && break; sleep 0.01; done ;;
    esac
    args+=("$a")
  done
  vhost-device-vsock --guest-cid 3 --socket "$floor_run/vhost-vsock.sock" --uds-path "$floor_run/vsock.sock" >/dev/null 2>&1 &
  FLOOR_HELPERS+=" $!"
  for _ in $(seq 200); do [ -S "$floor_run/vhost-vsock.sock" ] && break; sleep 0.01; done
  s=$(now)
  "${QEMU_ARGS[0]}" "${args[@]}" >/dev/null 2>&1 &
  qemu=$!
  until grep -q TRIVIAL-INIT-REACHED "$floor_run/console.log" 2>/dev/null; do
    kill -0 "$qemu" 2>/dev/null || { echo "floor QEMU exited early:" >&2; cat "$floor_run/console.log" >&2; exit 1; }
    sleep 0.005
  done
  floors+=("$(ms "$s")")
  wait "$qemu" || true
  for h in $FLOOR_HELPERS; do kill "$h" 2>/dev/null || true; wait "$h" 2>/dev/null || true; done
  FLOOR_HELPERS=
done
start_med=$(printf '%s\n' "${starts[@]}" | median)
floor_med=$(printf '%s\n' "${floors[@]}" | median)
printf '%-58s %8s ms   (runs: %s)\n' "skiff start → docker version works" "$start_med" "${starts[*]}"
printf '%-58s %8s ms   (runs: %s)\n' "floor: same kernel + QEMU reach a trivial /init" "$floor_med" "${floors[*]}"
printf '%-58s %8s×   (target ≤ 1.3×)\n' "ratio" "$(ratio "$start_med" "$floor_med")"
target "skiff start / floor" "$(ratio "$start_med" "$floor_med")" "<=" 1.3

echo "== memory after boot (idle VM, one image loaded)"
target/release/skiff start >/dev/null 2>&1
sleep 3
status=$(target/release/skiff status --json)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
daemon=$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon_pid"])')
read -r qemu helpers < <(echo "$status" | python3 -c 'import json,sys; p=json.load(sys.stdin)["vm_pids"]; print(p[0], " ".join(map(str, p[1:])))')
host_kib=$(rss "$daemon")
for h in $helpers; do host_kib=$((host_kib + $(rss "$h"))); done
printf '%-58s %8.1f MiB   (target < 30)\n' "host: daemon + vhost-device-vsock + virtiofsd (\$HOME) RSS" "$(awk -v k="$host_kib" 'BEGIN{print k/1024}')"
target "host: daemon + helpers RSS (MiB)" "$(awk -v k="$host_kib" 'BEGIN{printf "%.1f", k/1024}')" "<=" 30
printf '%-58s %8.1f MiB\n' "host: QEMU RSS (guest RAM touched + emulator)" "$(awk -v k="$(rss "$qemu")" 'BEGIN{print k/1024}')"
echo "$status" | python3 -c '
import json, sys
g = json.load(sys.stdin)["guest"]
print("%-58s %8.1f MiB   (target < 64)" % ("guest: used, as free(1) counts it", g["mem_used"] / 2**20))
print("%-58s %8.1f MiB" % ("guest: shmem (initramfs files, counted as cache by free)", g["mem_shmem"] / 2**20))'

echo "== docker run --rm busybox true, median of $((N * 3))"
SKIFF_SOCK=$WORK/native.sock
target/release/skiff-agent serve --socket "$SKIFF_SOCK" --root "$WORK/native" 2>"$WORK/native.log" &
SKIFF_PID=$!
for _ in $(seq 100); do [ -S "$SKIFF_SOCK" ] && break; sleep 0.05; done
skiff load -i target/fixtures/busybox.tar >/dev/null
vmdocker run --rm busybox true >/dev/null; skiff run --rm busybox true >/dev/null
for _ in $(seq $((N * 3))); do
  time_it vm run vmdocker run --rm busybox true
  time_it native run skiff run --rm busybox true
done
vm_run=$(median_of vm.run) native_run=$(median_of native.run)
printf '%-58s %8.1f ms\n' "through the VM ($accel)" "$(awk -v t="$vm_run" 'BEGIN{print t/10}')"
printf '%-58s %8.1f ms\n' "native engine on the host" "$(awk -v t="$native_run" 'BEGIN{print t/10}')"
printf '%-58s %8s×\n' "VM / native" "$(ratio "$vm_run" "$native_run")"
target "docker run --rm: through the VM / native" "$(ratio "$vm_run" "$native_run")" "<=" 1.5

echo "== docker run --rm of an emulated foreign-architecture busybox (binfmt_misc + QEMU user mode), natively, median of $((N * 3))"
skiff load -i target/fixtures/busybox-arm64.tar >/dev/null
if skiff run --rm skiff-test/busybox-arm64 true >/dev/null 2>&1; then
  for _ in $(seq $((N * 3))); do
    time_it native emulated skiff run --rm skiff-test/busybox-arm64 true
    time_it native run2 skiff run --rm busybox true
  done
  emu=$(median_of native.emulated) nat=$(median_of native.run2)
  printf '%-58s %8.1f ms\n' "arm64 busybox, emulated" "$(awk -v t="$emu" 'BEGIN{print t/10}')"
  printf '%-58s %8.1f ms\n' "amd64 busybox, native" "$(awk -v t="$nat" 'BEGIN{print t/10}')"
  printf '%-58s %8s×\n' "emulated / native" "$(ratio "$emu" "$nat")"
else
  echo "no emulator registered here (install qemu-user-static)"
fi
targets_summary
