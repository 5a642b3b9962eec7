#!/usr/bin/env bash
# sign.sh — on a Mac: builds `skiff` and signs it with the entitlement Virtualization.framework
# requires (com.apple.security.virtualization), with the hardened runtime. Without an identity
# the signature is ad hoc (`-`): enough to run it on this Mac; distribution needs a Developer ID
# (SKIFF_SIGN_IDENTITY="Developer ID Application: …") and notarisation (`xcrun notarytool`).
# Not run in CI: these machines have no Apple toolchain (docs/platforms.md).
# Usage: scripts/macos/sign.sh [--release]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
[ "$(uname -s)" = Darwin ] || { echo "sign.sh: run this on macOS" >&2; exit 2; }
profile=debug
if [ "${1:-}" = --release ]; then profile=release; cargo build --release -p skiff; else cargo build -p skiff; fi
bin=target/$profile/skiff
codesign --force --options runtime --entitlements scripts/macos/skiff.entitlements \
  --sign "${SKIFF_SIGN_IDENTITY:--}" "$bin"
codesign --display --entitlements - "$bin" | grep -q com.apple.security.virtualization
echo "signed $bin"
