#!/usr/bin/env bash
# bench/volumes.sh — file I/O where developers keep their files, measured in one run:
#   a bind mount of a host folder through virtio-fs (VM), a named volume on the VM's data disk,
#   and the host's own file system (native floor).
# Each: sequential write of 256 MiB (fsync'd), sequential read of it after dropping caches, and
# create + stat + delete of 10,000 small files. Same busybox script everywhere; ratios printed.
# Target: bind-mount throughput ≥ 50% of the named volume's under the same accelerator.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
source bench/targets.sh
WORK=$(mktemp -d /tmp/skiff-bench-vol.XXXXXX)
export SKIFF_HOME=$WORK/home DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$WORK/share" "$WORK/native"
cleanup() { target/release/skiff stop -t 1 >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -q -p skiff -p skiff-agent
python3 tests/fixtures/build_fixtures.py target/fixtures >/dev/null
python3 vm-image/build.py 2>/dev/null
target/release/skiff start --cpus 2 --memory 2048 --share "$WORK/share" >/dev/null 2>&1
vmdocker() { DOCKER_HOST=unix://$SKIFF_HOME/docker.sock docker "$@"; }
vmdocker load -i target/fixtures/busybox.tar >/dev/null
accel=$(target/release/skiff status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accel"])')

# Prints "write_ms read_ms files_ms" for the directory $1 (run by busybox sh).
SCRIPT='
d=$1
ms() { read -r up _ < /proc/uptime; f=${up#*.}; f=${f#0}; echo $(( ${up%.*} * 1000 + 10 * f )); }
t0=$(ms); dd if=/dev/zero of=$d/f bs=1M count=256 conv=fsync 2>/dev/null; t1=$(ms)
sync; echo 3 > /proc/sys/vm/drop_caches
t2=$(ms); dd if=$d/f of=/dev/null bs=1M 2>/dev/null; t3=$(ms)
rm $d/f; mkdir $d/small; cd $d/small
t4=$(ms); i=0; while [ $i -lt 10000 ]; do : > f$i; i=$((i+1)); done; ls -l > /dev/null; cd ..; rm -r small; t5=$(ms)
echo $((t1-t0)) $((t3-t2)) $((t5-t4))'

run_vm() { vmdocker run --rm --privileged -v "$1:/t" busybox sh -c "$SCRIPT" sh /t; }
read -r bw br bf < <(run_vm "$WORK/share")
read -r vw vr vf < <(run_vm benchvol)
# The same bind mount with virtiofsd's `auto` cache (attributes cached for 1 s) for comparison.
target/release/skiff stop -t 1 >/dev/null
SKIFF_VIRTIOFS_CACHE=auto target/release/skiff start >/dev/null 2>&1
read -r aw ar af < <(run_vm "$WORK/share")
read -r nw nr nf < <(busybox sh -c "$SCRIPT" sh "$WORK/native")

mibs() { awk -v ms="$1" 'BEGIN{printf "%.0f", 256 * 1000 / ms}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.0f%%", 100 * a / b}'; }
echo "== file I/O ($accel; MiB/s for 256 MiB, ms for 10k small files)"
printf '%-34s %10s %10s %14s\n' "" "write" "read" "10k files"
printf '%-34s %8s/s %8s/s %11s ms\n' "bind mount (virtio-fs, VM)" "$(mibs "$bw")M" "$(mibs "$br")M" "$bf"
printf '%-34s %8s/s %8s/s %11s ms\n' "bind mount, SKIFF_VIRTIOFS_CACHE=auto" "$(mibs "$aw")M" "$(mibs "$ar")M" "$af"
printf '%-34s %8s/s %8s/s %11s ms\n' "named volume (data disk, VM)" "$(mibs "$vw")M" "$(mibs "$vr")M" "$vf"
printf '%-34s %8s/s %8s/s %11s ms\n' "host file system (native)" "$(mibs "$nw")M" "$(mibs "$nr")M" "$nf"
printf '%-34s %10s %10s %14s   (target ≥ 50%%)\n' "bind (never) / volume" "$(pct "$vw" "$bw")" "$(pct "$vr" "$br")" "$(pct "$vf" "$bf")"
printf '%-34s %10s %10s %14s\n' "bind / native" "$(pct "$nw" "$bw")" "$(pct "$nr" "$br")" "$(pct "$nf" "$bf")"
frac() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; }
target "bind mount / named volume: write" "$(frac "$vw" "$bw")" ">=" 0.5
target "bind mount / named volume: read" "$(frac "$vr" "$br")" ">=" 0.5
target "bind mount / named volume: 10k small files" "$(frac "$vf" "$bf")" ">=" 0.5
targets_summary
