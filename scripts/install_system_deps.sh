#!/usr/bin/env bash
# Installs the system packages ReactDiff Live needs (Debian/Ubuntu: apt-get; elsewhere: says what to install).
#   espeak-ng      speech for the synthetic corpus
#   libportaudio2  sounddevice's PortAudio backend (--audio-device)
# With --test, also what the test suite needs:
#   chromium, chromium-driver  the headless browser participant of the room end-to-end tests (tests/e2e)
#   janus          Janus WebRTC server (VideoRoom), started by the room tests on 127.0.0.1
#   nftables       `nft`: the network-fault tests drop UDP at a set rate inside their own network namespace
set -euo pipefail
PKGS=(espeak-ng libportaudio2)
[ "${1:-}" = "--test" ] && PKGS+=(chromium chromium-driver janus nftables)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system packages: ${missing[*]}; install them with your package manager" >&2
  echo "       (macOS: brew install espeak-ng portaudio)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
