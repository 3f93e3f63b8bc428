#!/usr/bin/env bash
# Installs the Debian packages fairline needs (GStreamer for camera/file sources, nats-server for
# the verdict bus and its tests, chromium for the operator page's browser test, driven by
# playwright-core without a browser download; python3-onnx for the ONNX checker test of the exported
# detector), then the npm dependencies. Safe to run again.
#   scripts/setup.sh           runtime + test dependencies
#   scripts/setup.sh --bench   also python3-torch, for the PyTorch peer in `npm run bench`
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
pkgs=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good gstreamer1.0-tools nats-server openssl chromium python3-onnx)
if [ "${1:-}" = "--bench" ]; then pkgs+=(python3-torch); fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# onnxruntime-node's CPU build ships in its npm tarball; its postinstall only downloads CUDA extras
# from outside the npm registry. package.json "allowScripts" denies that script (npm 11); the
# variable does the same for npm versions that ignore allowScripts.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
