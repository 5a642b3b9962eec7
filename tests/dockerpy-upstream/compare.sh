#!/usr/bin/env bash
# compare.sh — docker-py's own upstream integration suite (vendored here, see README.md) against
# Skiff and against Debian's dockerd 20.10 on this machine, with the same deselection
# (deselect.txt) and the same settings for both; prints the counts side by side and the tests
# that pass on one engine but not the other. Runs as root, offline, from any cwd.
# Usage: tests/dockerpy-upstream/compare.sh
# Env:
#   DOCKERPY_RESULTS          results dir (junit XML, outcomes.tsv, engine logs);
#                             default target/dockerpy-upstream
#   DOCKERPY_TEST_TIMEOUT     per-test timeout in seconds (pytest-timeout), default 60
#   DOCKER_TEST_API_VERSION   API version the suite speaks to both engines, default 1.41 (dockerd
#                             20.10's): the suite skips tests that need a newer one, on both
#   SKIFF_AGENT_BIN           the agent, default target/debug/skiff-agent
#   SKIFF_FIXTURES            offline images, default target/fixtures (busybox.tar)
#   PYTEST_ADDOPTS            extra pytest options for both runs (e.g. a file to run only it)
# Exit status: 0 when Skiff passes at least as many tests as dockerd, 1 when it passes fewer, 2 when
# the comparison could not run (prerequisites missing, an engine did not start, pytest did not finish).
# Skiff runs first and is stopped before dockerd starts (dockerd sets iptables' FORWARD policy to
# DROP); dockerd is stopped at the end, also on failure or interrupt (scripts/dockerd.sh stop).
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
UPSTREAM_TAG=7.2.0   # the tag vendored here (README.md); docker-py in the venv should match

PY=$REPO/target/venv/bin/python
AGENT=${SKIFF_AGENT_BIN:-$REPO/target/debug/skiff-agent}
FIXTURES=${SKIFF_FIXTURES:-$REPO/target/fixtures}
RESULTS=${DOCKERPY_RESULTS:-$REPO/target/dockerpy-upstream}
TIMEOUT=${DOCKERPY_TEST_TIMEOUT:-60}
export DOCKER_TEST_API_VERSION=${DOCKER_TEST_API_VERSION:-1.41}
# Images the suite uses by name (TEST_IMG alpine:3.10, FROM alpine / busybox, image="alpine",
# ContainerSpec('busybox')): all are the offline busybox fixture.
IMAGES=(alpine:3.10 alpine:latest busybox:latest)

[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root" >&2; exit 2; }
[ -x "$AGENT" ] || { echo "compare.sh: no agent at $AGENT (cargo build)" >&2; exit 2; }
[ -f "$FIXTURES/busybox.tar" ] || { echo "compare.sh: no $FIXTURES/busybox.tar (tests/fixtures/build_fixtures.py)" >&2; exit 2; }
"$PY" -c "import docker, pytest, pytest_timeout, paramiko" 2>/dev/null ||
  { echo "compare.sh: $PY lacks docker/pytest/pytest-timeout/paramiko (scripts/install-deps.sh)" >&2; exit 2; }
have=$("$PY" -c 'import docker; print(docker.__version__)')
[ "$have" = "$UPSTREAM_TAG" ] ||
  echo "WARNING: docker-py $have in the venv, the vendored suite is from $UPSTREAM_TAG" >&2

# deselect.txt: checked by compare.py; its node ids deselected by deselect_plugin.py, its -k entries
# passed as -k.
args=$("$PY" "$HERE/compare.py" args "$HERE/deselect.txt") || exit 2
DESELECT=(-p deselect_plugin)
[ -z "$args" ] || mapfile -t -O 2 DESELECT <<<"$args"
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
for f in {skiff,dockerd}{.xml,-pytest.log} skiff-agent.log dockerd.log outcomes.tsv; do rm -f "$RESULTS/$f"; done

# A short path: containerd's socket under the dockerd dir must fit in 107 bytes.
WORK=$(mktemp -d /tmp/skiff-dpy.XXXXXX)
BRIDGE=skiffdpy$(($$ % 100000))
AGENT_PID= DOCKERD_UP=0
START=$(date +%s)

stop_agent() {
  [ -n "$AGENT_PID" ] || return 0
  if kill -0 "$AGENT_PID" 2>/dev/null; then
    kill "$AGENT_PID"
    for _ in $(seq 300); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$AGENT_PID" 2>/dev/null && { echo "skiff-agent did not exit in 30 s, SIGKILL" >&2; kill -9 "$AGENT_PID"; }
  fi
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=
  echo "skiff-agent stopped"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ "$rc" -lt 128 ] || echo "compare.sh: interrupted, cleaning up" >&2
  stop_agent
  [ -f "$WORK/dockerd/dockerd.log" ] && cp "$WORK/dockerd/dockerd.log" "$RESULTS/dockerd.log"
  [ "$DOCKERD_UP" = 1 ] && "$REPO/scripts/dockerd.sh" stop "$WORK/dockerd"
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE" && echo "removed leftover bridge $BRIDGE"
  awk -v d="$WORK/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" && echo "unmounted leftover $m"
  done
  if awk -v d="$WORK/" 'index($2, d) == 1 {f = 1} END {exit !f}' /proc/mounts; then
    echo "WARNING: mounts left under $WORK, not removing it" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_engine SOCK PID: until `docker version` answers (60 s).
wait_engine() {
  for _ in $(seq 600); do
    DOCKER_HOST=unix://$1 docker version >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# run_suite NAME SOCK: loads and tags the images, runs pytest; its junit XML goes to RESULTS/NAME.xml.
run_suite() {
  local name=$1 sock=$2 cfg=$WORK/docker-config-$1 rc=0 t0
  # An empty client config of the run's own: no credentials, proxies or contexts of the host's
  # (docker-py's context tests write under it).
  mkdir -p "$cfg" && echo '{}' >"$cfg/config.json"
  export DOCKER_HOST=unix://$sock DOCKER_CONFIG=$cfg
  echo "== $name: $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})'), suite at API $DOCKER_TEST_API_VERSION"
  docker load -q -i "$FIXTURES/busybox.tar"
  for img in "${IMAGES[@]}"; do docker tag busybox:latest "$img"; done
  t0=$(date +%s)
  echo "== $name: pytest (output: $RESULTS/$name-pytest.log)"
  # From the vendored dir: its pytest.ini (upstream's) makes it the rootdir, node ids tests/...
  (cd "$HERE" && PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$HERE" DOCKERPY_DESELECT="$HERE/deselect.txt" timeout --foreground -k 30 7200 "$PY" -m pytest -p no:cacheprovider \
     --timeout="$TIMEOUT" --continue-on-collection-errors -q \
     --junitxml="$RESULTS/$name.xml" "${DESELECT[@]}" tests/integration) >"$RESULTS/$name-pytest.log" 2>&1 || rc=$?
  echo "== $name: $(grep -v '^\s*$' "$RESULTS/$name-pytest.log" | tail -n 1 | tr -d '=') (pytest exit $rc, $(( $(date +%s) - t0 )) s)"
  # 0 all passed, 1 some failed; anything else (interrupted, internal or usage error, no tests,
  # the 2 h guard) leaves no usable report.
  [ "$rc" -le 1 ] || { echo "compare.sh: pytest against $name exited $rc" >&2; exit 2; }
  unset DOCKER_HOST DOCKER_CONFIG
}

# Skiff.
"$AGENT" serve --socket "$WORK/skiff.sock" --root "$WORK/skiff-root" --bridge "$BRIDGE" \
  --shutdown-timeout 2 </dev/null >/dev/null 2>"$RESULTS/skiff-agent.log" &
AGENT_PID=$!
wait_engine "$WORK/skiff.sock" "$AGENT_PID" ||
  { echo "skiff-agent did not start; log:" >&2; tail -20 "$RESULTS/skiff-agent.log" >&2; exit 2; }
run_suite skiff "$WORK/skiff.sock"
stop_agent

# dockerd 20.10.
DOCKERD_UP=1   # from here on: even a failed start leaves things for dockerd.sh stop to clean
"$REPO/scripts/dockerd.sh" start "$WORK/dockerd" || exit 2
run_suite dockerd "$WORK/dockerd/docker.sock"
cp "$WORK/dockerd/dockerd.log" "$RESULTS/dockerd.log"
"$REPO/scripts/dockerd.sh" stop "$WORK/dockerd"
DOCKERD_UP=0

echo
echo "== docker-py $UPSTREAM_TAG upstream integration suite, $(grep -cvE '^\s*(#|$)' "$HERE/deselect.txt") deselections (deselect.txt)"
rc=0
"$PY" "$HERE/compare.py" report "$RESULTS/skiff.xml" "$RESULTS/dockerd.xml" "$RESULTS/outcomes.tsv" || rc=$?
[ "$rc" -le 1 ] || rc=2
echo "total time $(( $(date +%s) - START )) s; results in $RESULTS"
exit "$rc"
