"""Atomic checkpoint files (temporary file, fsync, rename); load with weights_only=True."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io.files import atomic_write

LATEST = "last.pt"


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save ``obj`` to ``path`` so that a reader never sees a half-written file (``io.files.atomic_write``)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


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
