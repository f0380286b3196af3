#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a venv with the pinned stack and this project
# (editable), and the Fashion-MNIST package. Re-running does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
DATA=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: $python is Python $("$python" -c 'import platform; print(platform.python_version())'); the pinned stack" \
       "is verified on Python 3.11 only. Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

stamp="$VENV/.installed-$(cat setup.py pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing the pinned TFX stack into $VENV (first time: a few minutes, ~3.5 GB)"
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip==24.2
  # tfx 1.16 declares Python <3.11 although all of its libraries ship 3.11 wheels.
  "$VENV/bin/pip" install --quiet --no-cache-dir --ignore-requires-python -c constraints.txt -e ".[test]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

# Fashion-MNIST, and Chromium with its driver for the page's test in a real headless browser.
if [ ! -f "$DATA" ] || ! command -v chromedriver >/dev/null; then
  install=(apt-get install -y -qq dataset-fashion-mnist chromium chromium-driver)
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && "${install[@]}"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo "${install[@]}"
  else
    echo "setup: Fashion-MNIST or Chromium is not installed and this user cannot install packages. As root, run:" >&2
    echo "  apt-get update && apt-get install -y dataset-fashion-mnist chromium chromium-driver" >&2
    exit 1
  fi
fi
