#!/usr/bin/env bash
# `make pi-check`: the Pi's robot path on arm64 under qemu-user, beside x86-64
# (cnn_perception/tools/pi_check.py says what is compared and why).
#
# Idempotent; everything it makes lives outside the repository, in
# ${PI_CHECK_CACHE:-~/.cache/cnn_perception/pi-check}:
#  - rootfs/: Debian bookworm arm64 (Raspberry Pi OS's base), minbase + python3.
#    `debootstrap --foreign` downloads and unpacks it; its second stage would run arm64
#    programs through binfmt_misc, which a container cannot register, so the packages
#    it downloaded are unpacked with `dpkg-deb -x` instead (Python needs no maintainer
#    scripts to run).
#  - site/: requirements-robot.txt from arm64 wheels (pip --platform, --only-binary),
#    without torch and timm (the Pi runs ONNX Runtime), with the pip OpenCV (a Pi uses
#    Raspberry Pi OS's own; the check needs no GStreamer).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "pi-check: $*"; }

cache=${PI_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cnn_perception/pi-check}
root=$cache/rootfs
site=$cache/site
mkdir -p "$cache"

missing=$(for p in debootstrap qemu-user-static; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    log "needs $(echo $missing) (apt, as root)"; exit 2
  fi
  log "installing $(echo $missing)"
  apt-get install -y -q $missing >/dev/null
fi

want='bookworm arm64 minbase python3 libgomp1 v1'
if [ "$(cat "$cache/.rootfs.stamp" 2>/dev/null)" != "$want" ]; then
  log "debootstrap: Debian bookworm arm64 into $root (a minute)"
  rm -rf "$root"
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,libgomp1 \
    bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log"
  for deb in "$root"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$root"; done
  echo "$want" > "$cache/.rootfs.stamp"
else
  log "$root is up to date"
fi

reqs="$cache/requirements-arm64.txt"
{ grep -vE '^(torch|torchvision|timm)[=<> ;]' requirements-robot.txt
  grep -E '^opencv-python-headless==' requirements.txt; } > "$reqs"
want=$(sha256sum "$reqs" scripts/pi_check.sh | sha256sum | cut -c1-16)
if [ "$(cat "$cache/.site.stamp" 2>/dev/null)" != "$want" ]; then
  log "arm64 wheels into $site"
  rm -rf "$site"
  pip_py=.venv/bin/python; [ -x "$pip_py" ] || pip_py=python3
  "$pip_py" -m pip install --quiet --disable-pip-version-check --target "$site" \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
    --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp \
    --only-binary=:all: -r "$reqs"
  echo "$want" > "$cache/.site.stamp"
else
  log "$site is up to date"
fi

set +u
source scripts/env.sh
set -u
python -m cnn_perception.tools.pi_check --root "$root" --site "$site" --out docs/pi_check.md
