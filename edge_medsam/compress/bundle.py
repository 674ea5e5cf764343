"""Writing a bundle atomically: build it in a hidden folder next to the target, then rename it into place.

A reader therefore sees the old bundle or the new one, never half of one; a failed export leaves no trace.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_medsam.errors import InputError
from edge_medsam.io.files import atomic_write
from edge_medsam.runtime.manifest import MANIFEST, Manifest, verify_bundle


def _check_target(target: Path) -> None:
    if target.exists() and not (target.is_dir() and ((target / MANIFEST).is_file() or not any(target.iterdir()))):
        raise InputError("the output path exists and is not a bundle folder", path=target,
                         fix="choose a new folder name (an existing bundle is replaced)")


@contextmanager
def staged_bundle(target: str | Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` to build in; removed if the block fails (see ``publish``)."""
    target = Path(target)
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_manifest(staging: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` and check every file it lists against its sha256."""
    path = staging / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    verify_bundle(staging, manifest)
    return path


def publish(staging: Path, target: str | Path) -> Path:
    """Move a finished staging folder to ``target``, replacing an older bundle there."""
    target = Path(target)
    _check_target(target)
    os.chmod(staging, 0o755)  # mkdtemp made it private; a bundle is meant to be shared
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def zip_bundle(bundle: str | Path) -> Path:
    """Write ``<bundle>.zip`` (the folder's files at the archive root) atomically."""
    bundle = Path(bundle)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
                zf.write(path, path.relative_to(bundle).as_posix())

    return atomic_write(bundle.with_name(bundle.name + ".zip"), write)
