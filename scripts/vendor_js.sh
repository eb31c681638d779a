#!/usr/bin/env bash
# Vendors the room page's browser libraries from the npm registry at the versions pinned (with their sha512) in
# engine/room_server/js/package-lock.json, into engine/room_server/static/vendor/ (not committed):
#   @msgpack/msgpack  decodes the engine's msgpack reactions frames in the browser (dist.umd/msgpack.min.js)
# Needs npm (Debian: apt-get install npm; installed here when missing and apt-get is there).
set -euo pipefail
cd "$(dirname "$0")/.."
JS=engine/room_server/js
VENDOR=engine/room_server/static/vendor
if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing system packages: npm"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
  else
    echo "error: npm is needed to vendor the room page's msgpack library; install Node.js and npm" >&2
    exit 1
  fi
fi
# npm ci installs exactly the locked versions and fails if a download does not match its recorded integrity
npm ci --prefix "$JS" --ignore-scripts --no-audit --no-fund --loglevel=error
mkdir -p "$VENDOR"
cp "$JS/node_modules/@msgpack/msgpack/dist.umd/msgpack.min.js" "$VENDOR/msgpack.min.js"
cp "$JS/node_modules/@msgpack/msgpack/LICENSE" "$VENDOR/msgpack.LICENSE"
