#!/usr/bin/env bash
# tests/ui/run.sh — the desktop app end to end, against a real engine:
#  1. browser mode: `skiff-desktop --serve` + Debian's Chromium driven by Playwright
#     (tests/ui/e2e.mjs): run dialog, container list, logs, terminal, stop/delete, pull with
#     progress from a local registry, volumes.
#  2. the real Tauri window under Xvfb, driven over WebDriver (tests/ui/window.mjs): the same
#     flow through Tauri's IPC, and a port link handed to the (stand-in) browser;
#  3. the real Tauri window under Xvfb, once per view; a screenshot of each is saved to
#     target/ui-screenshots/ (and, with --update-screenshots, to docs/screenshots/);
#  4. the tray icon (tests/ui/tray.mjs): the test is the desktop shell's tray on a private D-Bus
#     session; it reads the menu and clicks open, start engine (a real VM), stop engine, quit.
# Needs: a built skiff-agent + skiff + skiff-desktop (debug), the guest image, fixtures, ui/node_modules,
# chromium, xvfb, dbus-daemon, xwininfo.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
UPDATE=${1:-}
WORK=$(mktemp -d /tmp/skiff-ui-e2e.XXXXXX)
OUT=target/ui-screenshots
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REG_PORT=$(free_port)
UI_PORT=$(free_port)
cleanup() {
  [ -n "${UI_PID:-}" ] && kill "$UI_PID" 2>/dev/null || true
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  scripts/registry.sh stop "$REG_PORT" "$WORK/registry" >/dev/null 2>&1 || true
  # A tray test that failed half-way may leave its VM running.
  [ -d "$WORK/tray-home/run" ] && SKIFF_HOME=$WORK/tray-home target/debug/skiff stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

target/debug/skiff-agent serve --socket "$WORK/docker.sock" --root "$WORK/root" --bridge skiffUI$$ 2>"$WORK/agent.log" &
AGENT_PID=$!
for _ in $(seq 200); do [ -S "$WORK/docker.sock" ] && break; sleep 0.05; done
export DOCKER_HOST=unix://$WORK/docker.sock
docker load -q -i target/fixtures/busybox.tar >/dev/null
scripts/registry.sh start "$REG_PORT" "$WORK/registry" >/dev/null
docker tag busybox:latest "127.0.0.1:$REG_PORT/e2e/busybox:1.0"
docker push -q "127.0.0.1:$REG_PORT/e2e/busybox:1.0" >/dev/null
docker rmi -f "127.0.0.1:$REG_PORT/e2e/busybox:1.0" >/dev/null
# A project folder for the build test.
mkdir -p "$WORK/project"
printf 'FROM busybox\nCOPY message /message\nRUN cat /message\n' > "$WORK/project/Dockerfile"
echo built-by-the-gui > "$WORK/project/message"

echo "== browser mode (Chromium + Playwright)"
target/debug/skiff-desktop --serve "127.0.0.1:$UI_PORT" 2>"$WORK/ui.log" &
UI_PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$UI_PORT/" >/dev/null && break; sleep 0.05; done
SKIFF_UI_URL=http://127.0.0.1:$UI_PORT REGISTRY=127.0.0.1:$REG_PORT SCREENSHOTS=$OUT BUILD_DIR=$WORK/project \
  node --test --test-reporter=spec tests/ui/e2e.mjs || { echo "--- ui log"; cat "$WORK/ui.log"; exit 1; }
kill "$UI_PID"; UI_PID=

echo "== the real window, driven (Tauri under Xvfb, WebKitWebDriver)"
# A container to list when the window opens: the backend draws that first list into the page.
docker run -d --name win-first busybox sleep 600 >/dev/null
# A stand-in browser: the desktop's default handler for http:// records what it was asked to open.
OPENED=$WORK/opened.txt
mkdir -p "$WORK/xdg-data/applications" "$WORK/xdg-config"
printf '#!/bin/sh\necho "$@" >>%s\n' "$OPENED" >"$WORK/browser.sh"
chmod +x "$WORK/browser.sh"
printf '[Desktop Entry]\nType=Application\nName=Test browser\nExec=%s %%u\nMimeType=x-scheme-handler/http;\n' \
  "$WORK/browser.sh" >"$WORK/xdg-data/applications/skiff-test-browser.desktop"
printf '[Default Applications]\nx-scheme-handler/http=skiff-test-browser.desktop\n' |
  tee "$WORK/xdg-config/mimeapps.list" >"$WORK/xdg-data/applications/mimeapps.list"
WD_PORT=$(free_port)
XDG_DATA_HOME=$WORK/xdg-data XDG_CONFIG_HOME=$WORK/xdg-config BROWSER=$WORK/browser.sh TAURI_WEBVIEW_AUTOMATION=true \
  WEBDRIVER=http://127.0.0.1:$WD_PORT SKIFF_DESKTOP=$PWD/target/debug/skiff-desktop OPENED=$OPENED \
  WEB_PORT=$(free_port) SCREENSHOTS=$OUT \
  xvfb-run -a -s "-screen 0 1280x800x24" bash -c '
    WebKitWebDriver --port="$1" >"$2" 2>&1 & driver=$!
    for _ in $(seq 100); do curl -sf "$WEBDRIVER/status" >/dev/null && break; sleep 0.05; done
    node --test --test-reporter=spec tests/ui/window.mjs; rc=$?
    kill $driver; wait $driver 2>/dev/null
    exit $rc' _ "$WD_PORT" "$WORK/webdriver.log" || { echo "--- webdriver log"; cat "$WORK/webdriver.log"; exit 1; }

echo "== the real window (Tauri, Xvfb), one screenshot per view"
# Something to show: a compose-labelled pair, a volume, the images already loaded.
docker volume create e2e-data >/dev/null
docker run -d --name shot-web -l com.docker.compose.project=shop -l com.docker.compose.service=web \
  -p "$(free_port):80" -v e2e-data:/data busybox httpd -f -p 80 -h /etc >/dev/null
docker run -d --name shot-worker -l com.docker.compose.project=shop busybox sleep 600 >/dev/null
docker run -d --name shot-solo busybox sleep 600 >/dev/null
for view in containers images volumes vm; do
  xvfb-run -a -s "-screen 0 1280x800x24" bash -c '
    target/debug/skiff-desktop --view "$1" 2>"$2" & app=$!
    sleep 6
    kill -0 $app || { echo "the window exited early"; cat "$2"; exit 1; }
    import -window root "$3"
    kill $app; wait $app 2>/dev/null || true' _ "$view" "$WORK/window-$view.log" "$OUT/$view.png"
  colors=$(identify -format %k "$OUT/$view.png")
  echo "$view: $OUT/$view.png ($colors colours)"
  [ "$colors" -gt 50 ] || { echo "the $view screenshot is blank"; cat "$WORK/window-$view.log"; exit 1; }
  if [ "$UPDATE" = --update-screenshots ]; then mkdir -p docs/screenshots && cp "$OUT/$view.png" "docs/screenshots/$view.png"; fi
done
docker rm -f shot-web shot-worker shot-solo >/dev/null

echo "== the tray icon (Tauri under Xvfb, its own D-Bus session; the test is the shell's tray)"
# Its own Skiff home: the tray starts and stops a real VM (TCG: KVM is broken on these machines).
mkdir -p "$WORK/tray-home"
echo '{"accel": "tcg", "memory_mib": 1024, "shares": []}' >"$WORK/tray-home/config.json"
env -u DOCKER_HOST SKIFF_HOME=$WORK/tray-home SKIFF_DESKTOP=$PWD/target/debug/skiff-desktop \
  xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- \
  node --test --test-reporter=spec tests/ui/tray.mjs 2>"$WORK/tray.log" ||
  { echo "--- tray log"; cat "$WORK/tray.log"; cat "$WORK/tray-home/logs/"*.log 2>/dev/null; exit 1; }
echo "ui e2e: ok"
