#!/usr/bin/env bash
# trivial-initramfs.sh OUT MODE [BUSYBOX] — an initramfs whose /init is a busybox shell script, for the boot
# benchmark's floor and for failure tests. It prints "TRIVIAL-INIT-REACHED" on the console, then:
#   MODE=poweroff  powers the VM off at once (bench/vm.sh: the time the kernel takes to reach /init)
#   MODE=hang      sleeps forever (tests: a guest that never answers)
set -euo pipefail
out=$1 mode=$2 busybox=${3:-/bin/busybox}  # another architecture's static busybox for its guest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/dev" "$work/proc"
mknod -m 600 "$work/dev/console" c 5 1
install -m 755 "$busybox" "$work/bin/busybox"
case "$mode" in
  poweroff) tail='/bin/busybox poweroff -f' ;;
  hang) tail='exec /bin/busybox sleep 100000' ;;
  *) echo "mode must be poweroff or hang" >&2; exit 2 ;;
esac
printf '#!/bin/busybox sh\necho TRIVIAL-INIT-REACHED > /dev/console\n%s\n' "$tail" >"$work/init"
chmod 755 "$work/init"
(cd "$work" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible) >"$out"
