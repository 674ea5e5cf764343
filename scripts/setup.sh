#!/usr/bin/env bash
# Create ./.venv (or $VENV) and install edge-medsam from this checkout with every extra.
# pip picks a matching torch/torchvision pair from the registry (a CUDA build; it runs on CPU too).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ "${FRESH:-0}" = "1" ]; then rm -rf "$VENV"; fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --progress-bar off -e ".[all]"
echo "edge-medsam installed in $VENV"
