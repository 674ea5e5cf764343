"""Atomic checkpoint files: write to a temporary file, fsync, rename; load with weights_only=True."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from edge_medsam.errors import EdgeMedSAMError

LATEST = "last.pt"


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save ``obj`` to ``path`` so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_partial_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) that a writer killed mid-write left in ``folder``."""
    partial = sorted(Path(folder).glob(".*.tmp")) if Path(folder).is_dir() else []
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by this engine (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeMedSAMError("checkpoint not found", path=path, fix="check the path or start without --resume")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged or foreign files
        raise EdgeMedSAMError(f"cannot read checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
                              path=path, fix="use a checkpoint written by edge-medsam, or delete it to restart") from err
