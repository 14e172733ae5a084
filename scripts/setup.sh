#!/usr/bin/env bash
# Create .venv with everything napari-unet, its tests and its demo need, on a fresh Linux machine.
# Safe to re-run: make calls it only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# Qt's xcb platform needs these libraries; Xvfb gives a screen to headless machines and tests.
DEBIAN_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-randr0 libxcb-shape0 libxcb-cursor0 \
libdbus-1-3 libgl1 libegl1 libfontconfig1"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for package in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing="$missing $package"
  done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: warning: missing system packages (install them as root):$missing" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: this machine's CPU build. An unpinned torch pulls a multi-GB CUDA build.
# For a GPU, install the CUDA build of torch first (see README), then re-run this script.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[testing]" ruff
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, napari; print("torch", torch.__version__, "napari", napari.__version__)'))"
