# bench/lib.sh — shared by the benchmark scripts: starts Skiff (release build) and Debian's dockerd
# side by side under $WORK, and gives them the same `docker` front ends and timing helpers.
# Source it after setting WORK; call start_engines, and stop_engines from the script's cleanup.

# Puts $WORK on a fresh journaled ext4 (a sparse file, loop-mounted): what the VM's data disk and
# most Linux installs have. These machines' root is an ext4 without a journal, whose inode
# allocator makes every create step over the inodes deleted in the last seconds, so a benchmark
# that removes and recreates thousands of files would measure that rather than the engines.
# Falls back to $WORK as it is (with a notice) where a loop mount is not possible.
scratch_fs() {
  SCRATCH_IMG=$WORK.img
  if truncate -s 16G "$SCRATCH_IMG" && mkfs.ext4 -q -F "$SCRATCH_IMG" && mount -o loop "$SCRATCH_IMG" "$WORK"; then
    echo "working on a fresh journaled ext4 at $WORK"
  else
    rm -f "$SCRATCH_IMG"; SCRATCH_IMG=""
    echo "note: no loop mount here; working on $(findmnt -n -o FSTYPE -T "$WORK") at $WORK"
  fi
}
scratch_fs_done() {
  if [ -n "${SCRATCH_IMG:-}" ]; then umount -l "$WORK" 2>/dev/null || true; rm -f "$SCRATCH_IMG"; fi
}

start_engines() {
  cargo build --release -q -p skiff-agent
  python3 tests/fixtures/build_fixtures.py target/fixtures >/dev/null
  SKIFF_SOCK=$WORK/skiff.sock
  target/release/skiff-agent serve --socket "$SKIFF_SOCK" --root "$WORK/skiff" 2>"$WORK/skiff.log" &
  SKIFF_PID=$!
  scripts/dockerd.sh start "$WORK/dockerd" >/dev/null
  for _ in $(seq 100); do [ -S "$SKIFF_SOCK" ] && break; sleep 0.05; done
}

stop_engines() {
  skiff rm -f $(skiff ps -aq) >/dev/null 2>&1 || true
  kill "$SKIFF_PID" 2>/dev/null || true
  scripts/dockerd.sh stop "$WORK/dockerd" >/dev/null 2>&1 || true
}

skiff() { DOCKER_HOST=unix://$SKIFF_SOCK docker "$@"; }
dockerd() { DOCKER_HOST=unix://$WORK/dockerd/docker.sock docker "$@"; }
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v d="$1" -v s="$2" 'BEGIN{print d/s}'; }

# T[engine.label] collects timings in tenths of a millisecond.
declare -A T
time_it() { local e=$1 l=$2; shift 2; local s; s=$(now); "$@" >/dev/null 2>&1; T[$e.$l]+="$(( ($(now) - s) / 100000 )) "; }
median_of() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
