#!/usr/bin/env bash
# bench/build.sh — image builds, Skiff vs Debian's dockerd 20.10 (classic builder) vs buildah 1.28
# (`buildah bud --layers`), side by side in one run, on two realistic projects:
#   A. a multi-stage build on the Debian minbase fixture (two independent stages with several RUN
#      steps, a final stage copying from both plus ~60 source files);
#   B. a context of 10,000 small files and one 50 MB file, copied whole into a busybox image.
# For each: a cold build (no cache), a fully cached rebuild, and a rebuild after one source file
# changed; for B the cached rebuild is the context upload (sending and checking 10k files + 50 MB).
# Also Skiff's peak extra memory (engine RSS above idle) during A's cold build.
# Each is repeated RUNS times (default 3) alternating engines; medians and ratios are printed.
# Targets (issue 13): cached ≥ 5× faster than the faster baseline, one-file change ≥ 2×, cold and
# context ≥ 1.5×, peak extra memory < 100 MiB.
# All three work on a fresh journaled ext4 (bench/lib.sh scratch_fs).
# Usage (as root, after scripts/install-deps.sh): bench/build.sh [RUNS]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
RUNS=${1:-3}
WORK=$(mktemp -d /tmp/skiff-bench-XXXX)
FIX=target/fixtures
source bench/lib.sh
scratch_fs
command -v buildah >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah >/dev/null
export DOCKER_BUILDKIT=0
start_engines
BUILDAH_ROOT=$WORK/buildah
bah() { buildah --root "$BUILDAH_ROOT" --runroot "$WORK/buildah-run" --storage-driver vfs "$@"; }
# vfs copies every layer; overlay is what a real buildah user gets where it works: try it first.
if buildah --root "$WORK/probe" --runroot "$WORK/probe-run" --storage-driver overlay images >/dev/null 2>&1; then
  bah() { buildah --root "$BUILDAH_ROOT" --runroot "$WORK/buildah-run" --storage-driver overlay "$@"; }
fi
cleanup() {
  stop_engines
  bah rm -a >/dev/null 2>&1 || true
  awk -v d="$WORK/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "${WORK:?}"/*
  scratch_fs_done
  rm -rf "$WORK"
}
trap cleanup EXIT

for e in skiff dockerd; do $e load -i "$FIX/debian.tar" >/dev/null; $e load -i "$FIX/busybox.tar" >/dev/null; done
bah_bases() {
  bah tag "$(bah pull -q docker-archive:"$FIX/debian.tar")" skiff-test/debian:bookworm
  bah tag "$(bah pull -q docker-archive:"$FIX/busybox.tar")" busybox:latest
}
bah_bases

# Project A: multi-stage.
A=$WORK/project-a
mkdir -p "$A/src"
for i in $(seq 60); do printf 'source file %s\n' "$i" > "$A/src/file$i.txt"; done
cat > "$A/Dockerfile" <<'EOF'
FROM skiff-test/debian:bookworm AS deps
RUN mkdir -p /opt/deps && for i in $(seq 1 300); do echo "dep $i" > /opt/deps/f$i; done
RUN dd if=/dev/urandom of=/opt/deps/blob bs=1M count=20 2>/dev/null
RUN sha256sum /opt/deps/blob > /opt/deps/blob.sha256

FROM skiff-test/debian:bookworm AS tools
RUN mkdir -p /opt/tools && for i in $(seq 1 100); do echo "tool $i" > /opt/tools/t$i; done
RUN sleep 1 && echo built > /opt/tools/stamp

FROM skiff-test/debian:bookworm
ENV APP=/app
WORKDIR /app
COPY --from=deps /opt/deps /opt/deps
COPY --from=tools /opt/tools /opt/tools
COPY src/ /app/src/
RUN ls -R /app /opt > /app/index.txt && wc -l /app/index.txt
CMD ["cat", "/app/index.txt"]
EOF

# Project B: a large context.
B=$WORK/project-b
mkdir -p "$B/files"
python3 - "$B/files" <<'EOF'
import os, sys
root = sys.argv[1]
for d in range(100):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/d{d}/f{f}.txt", "w") as fh:
            fh.write(f"small file {d}/{f}\n")
with open(f"{root}/big.bin", "wb") as fh:
    fh.write(os.urandom(50 * 1024 * 1024))
EOF
printf 'FROM busybox\nCOPY . /ctx\n' > "$B/Dockerfile"

build_with() { # engine project [extra…]
  local e=$1 p=$2; shift 2
  case $e in
    buildah) bah bud --layers -q "$@" -t bench:latest "$p" ;;
    *) $e build -q "$@" -t bench:latest "$p" ;;
  esac
}
reset_cache() {
  case $1 in
    buildah) bah rmi -af >/dev/null 2>&1; bah_bases >/dev/null ;;
    *) $1 rmi -f bench:latest >/dev/null 2>&1 || true; $1 image prune -f >/dev/null 2>&1 || true; $1 builder prune -af >/dev/null 2>&1 || true ;;
  esac
}

peak_extra_mib=""
for r in $(seq "$RUNS"); do
  for e in dockerd buildah skiff; do
    for p in a b; do
      dir=$WORK/project-$p
      reset_cache "$e"
      if [ "$e" = skiff ] && [ "$p" = a ] && [ -z "$peak_extra_mib" ]; then
        idle=$(awk '/VmRSS/ {print $2}' "/proc/$SKIFF_PID/status")
        ( peak=0; while kill -0 "$SKIFF_PID" 2>/dev/null; do
            v=$(awk '/VmRSS/ {print $2}' "/proc/$SKIFF_PID/status" 2>/dev/null || echo 0)
            [ "$v" -gt "$peak" ] && peak=$v && echo "$peak" > "$WORK/peak"
            sleep 0.02; done ) & SAMPLER=$!
        time_it $e cold-$p build_with $e "$dir" --no-cache
        kill "$SAMPLER" 2>/dev/null || true
        peak_extra_mib=$(awk -v p="$(cat "$WORK/peak")" -v i="$idle" 'BEGIN{printf "%.1f", (p-i)/1024}')
      else
        time_it $e cold-$p build_with $e "$dir" --no-cache
      fi
      time_it $e cached-$p build_with $e "$dir"
      if [ "$p" = a ]; then echo "changed $r $e" >> "$dir/src/file1.txt"; else echo "changed $r $e" >> "$dir/files/d0/f0.txt"; fi
      time_it $e onefile-$p build_with $e "$dir"
    done
  done
done

# The cached rebuild without the CLI: the docker CLI's own start, context walk and tar cost
# about as much as Skiff's whole cached build, so the engines are also compared on the same
# request from a long-lived client (as docker-py or compose send it: one process, a connection per
# request), timed around the request alone (buildah has no API: dockerd is the baseline).
tar -C "$A" -cf "$WORK/a.tar" .
python3 - "$WORK/a.tar" "$SKIFF_SOCK" "$WORK/dockerd/docker.sock" $((RUNS * 10)) > "$WORK/api.txt" <<'PY'
import http.client, socket, sys, time
tar, socks, n = open(sys.argv[1], "rb").read(), sys.argv[2:4], int(sys.argv[4])
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)
def build(path):
    start = time.perf_counter()
    c = Unix(path)
    c.request("POST", "/build?t=bench-api:latest&q=1", body=tar, headers={"Content-Type": "application/x-tar"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200 or b'errorDetail' in body or b'sha256:' not in body:
        sys.exit(f"build failed on {path}: {r.status} {body[-300:]!r}")
    return time.perf_counter() - start
for p in socks:
    build(p)  # the first builds (or checks) the cache
times = {p: [] for p in socks}
for _ in range(n):
    for p in socks:
        times[p].append(build(p))
for p in socks:
    t = sorted(times[p])
    print(int(t[len(t) // 2] * 10_000))  # tenths of a millisecond, as time_it keeps them
PY
T[skiff.api-a]="$(sed -n 1p "$WORK/api.txt") "
T[dockerd.api-a]="$(sed -n 2p "$WORK/api.txt") "

printf '\n%-34s %11s %11s %11s %9s %7s %s\n' "build (median of $RUNS runs)" "dockerd s" "buildah s" "skiff s" "speed-up" "target" ""
met=0; missed=0
for l in cold-a cached-a api-a onefile-a cold-b cached-b onefile-b; do
  d=$(median_of dockerd.$l); s=$(median_of skiff.$l)
  if [ "$l" = api-a ]; then b=""; best=$d; else b=$(median_of buildah.$l); best=$(awk -v d="$d" -v b="$b" 'BEGIN{print (d<b)?d:b}'); fi
  case $l in
    cold-a) name="A multi-stage: cold"; target=1.5;; cached-a) name="A multi-stage: fully cached"; target=5;;
    api-a) name="A fully cached, API client"; target=5;;
    onefile-a) name="A multi-stage: one file changed"; target=2;;
    cold-b) name="B 10k files + 50 MB: cold"; target=1.5;; cached-b) name="B context upload (cached)"; target=1.5;;
    onefile-b) name="B one file changed"; target=2;;
  esac
  x=$(ratio "$best" "$s")
  verdict=$(awk -v x="$x" -v t="$target" 'BEGIN{print (x>=t)?"met":"MISSED"}')
  [ "$verdict" = met ] && met=$((met + 1)) || missed=$((missed + 1))
  printf '%-34s %11.3f %11s %11.3f %8.2fx %6sx %s\n' "$name" "$(awk -v v="$d" 'BEGIN{print v/10000}')" \
    "$([ -n "$b" ] && awk -v v="$b" 'BEGIN{printf "%.3f", v/10000}' || echo -)" "$(awk -v v="$s" 'BEGIN{print v/10000}')" "$x" "$target" "$verdict"
done
mem_verdict=$(awk -v m="$peak_extra_mib" 'BEGIN{print (m<100)?"met":"MISSED"}')
echo "(speed-up: the faster baseline's time / Skiff's; Skiff's peak extra memory during A's cold build: ${peak_extra_mib} MiB, target < 100 MiB: $mem_verdict)"
echo "targets met: $met of $((met + missed)) speed-ups"
