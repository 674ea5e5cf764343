#!/usr/bin/env bash
# Download the pyradiomics 3.0.1 source distribution (real CT/MR scans with real masks in its data/ folder) into
# the material cache ($EDGE_MEDSAM_MATERIAL, default $EDGE_MEDSAM_CACHE/material, ~/.cache/edge-medsam/material) for `edge-medsam data real`.
# Idempotent: a file already there with the right size is kept. Uses pip from $VENV (default .venv); pip builds
# the sdist's metadata with its setup.py, which imports numpy, setuptools, versioneer and wheel from that env.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
DEST="${EDGE_MEDSAM_MATERIAL:-${EDGE_MEDSAM_CACHE:-$HOME/.cache/edge-medsam}/material}"
NAME="pyradiomics-3.0.1.tar.gz"
SIZE=34473030
SHA256="47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
PYTHON="$VENV/bin/python"

[ -x "$PYTHON" ] || { echo "no Python at $PYTHON (run bash scripts/setup.sh, or set VENV)" >&2; exit 1; }
mkdir -p "$DEST"
target="$DEST/$NAME"
if [ -f "$target" ] && [ "$(stat -c %s "$target")" = "$SIZE" ]; then
    echo "already there: $target"
else
    "$PYTHON" -m pip install --quiet numpy setuptools versioneer wheel
    tmp="$(mktemp -d "$DEST/.download-XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation -d "$tmp" pyradiomics==3.0.1
    [ -f "$tmp/$NAME" ] || { echo "pip did not produce $NAME in $tmp" >&2; exit 1; }
    gzip -t "$tmp/$NAME" && tar -tzf "$tmp/$NAME" pyradiomics-3.0.1/data/lung1_label.nrrd >/dev/null \
        || { echo "$NAME is not a .tar.gz holding pyradiomics-3.0.1/data/" >&2; exit 1; }
    got="$(stat -c %s "$tmp/$NAME")"
    [ "$got" = "$SIZE" ] || { echo "$NAME is $got bytes, expected $SIZE" >&2; exit 1; }
    mv "$tmp/$NAME" "$target"
    echo "downloaded: $target"
fi
sum="$(sha256sum "$target" | cut -d' ' -f1)"
echo "sha256 $sum"
[ "$sum" = "$SHA256" ] || { echo "sha256 differs from the expected $SHA256" >&2; exit 1; }
