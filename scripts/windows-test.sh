#!/usr/bin/env bash
# windows-test.sh — the host side for Windows (x86_64-pc-windows-gnu), built here and tested
# under Wine: builds skiff.exe and the unit tests of skiff and skiff-proto with Debian's Rust
# (-Zbuild-std, mingw-w64 as linker), then runs the tests (named pipe round trip, WSL output
# decoding, Windows path translation, config) and `skiff.exe status` under wine64. Debian's Rust
# is put first on PATH for these builds only. `--desktop` also type-checks the desktop app for
# Windows (about ten minutes from a cold target/, so CI leaves it out).
# Usage: scripts/windows-test.sh [--desktop]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
TARGET=x86_64-pc-windows-gnu
OUT=target/$TARGET/debug
cross() {
  PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 cargo "$@" -Zbuild-std=std,panic_abort --target "$TARGET"
}
echo "== skiff for Windows: build"
cross build -p skiff --bin skiff
cross test --no-run --lib -p skiff -p skiff-proto --message-format json >target/windows-tests.json
mapfile -t TEST_EXES < <(jq -r 'select(.reason=="compiler-artifact" and .profile.test==true) | .executable // empty' target/windows-tests.json)
[ "${#TEST_EXES[@]}" -eq 2 ] || { echo "windows-test: expected 2 test executables, got ${#TEST_EXES[@]}" >&2; exit 1; }

# Wine 8 has no bcryptprimitives.dll (Rust's std needs its ProcessPrng): a tiny forwarder.
x86_64-w64-mingw32-gcc -O2 -shared -o "$OUT/bcryptprimitives.dll" scripts/windows/bcryptprimitives.c -ladvapi32
cp "$OUT/bcryptprimitives.dll" "$(dirname "${TEST_EXES[0]}")/"

WINE=${WINE:-$(command -v wine64 || echo /usr/lib/wine/wine64)}
export WINEPREFIX="$PWD/target/wine-prefix" WINEDEBUG=-all WINEDLLOVERRIDES="bcryptprimitives=n"
mkdir -p "$WINEPREFIX"
for exe in "${TEST_EXES[@]}"; do
  echo "== $(basename "$exe") under Wine"
  "$WINE" "$exe" --test-threads 1
done
echo "== skiff.exe under Wine"
status=$("$WINE" "$OUT/skiff.exe" status --json)
echo "$status"
echo "$status" | jq -e '.state == "stopped" and .backend == "wsl"' >/dev/null
"$WINE" "$OUT/skiff.exe" --help | grep -q "WSL 2"
if [ "${1:-}" = --desktop ]; then
  # ~10 minutes from a cold target/ on two cores (Tauri's Windows stack): not in CI's budget.
  echo "== the desktop app (Tauri, WebView2) type-checked for Windows"
  cross check -q -p skiff-desktop --message-format short 2>&1 | tee target/windows-desktop-check.log
  if grep -E "^(app|vm-agent)/.*(warning|error)" target/windows-desktop-check.log; then
    echo "windows-test: the desktop app has warnings for Windows" >&2; exit 1
  fi
fi
echo "windows-test: ok"
