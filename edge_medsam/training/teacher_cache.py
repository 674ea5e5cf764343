"""Teacher embeddings on disk, keyed by content: sha256 of the teacher's identity and of the exact model input.

A real teacher costs about a second per image on two CPU cores; its embeddings are computed once and reused by
every stage and every later run that feeds it the same pixels, whatever the file names or dataset order. Entries
are float16 ``.npy`` files written atomically (write, then rename), so an interrupted run leaves no half entry.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_medsam.io.files import atomic_write

CACHE_ENV = "EDGE_MEDSAM_CACHE"


def cache_root() -> Path:
    """``$EDGE_MEDSAM_CACHE`` or ``~/.cache/edge-medsam``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edge-medsam")


def teacher_identity(teacher: nn.Module) -> str:
    """The sha256 of a teacher's published weights file when it has one, else of its parameters and buffers."""
    weights = getattr(teacher, "weights", None)
    if isinstance(weights, dict) and weights.get("sha256"):
        return str(weights["sha256"])
    digest = hashlib.sha256(type(teacher).__name__.encode())
    for name, tensor in teacher.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings of one teacher: ``get``/``put`` by the teacher-frame input tensor [1, 3, S, S]."""

    def __init__(self, teacher: nn.Module, root: str | os.PathLike[str] | None = None):
        self.identity = teacher_identity(teacher)
        self.folder = Path(root or cache_root()) / "teacher-embeddings" / self.identity[:16]
        self.hits = self.misses = 0

    def _path(self, model_input: torch.Tensor) -> Path:
        data = model_input.detach().to("cpu", torch.float32).contiguous().numpy()
        key = hashlib.sha256(self.identity.encode() + str(data.shape).encode() + data.tobytes()).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, model_input: torch.Tensor) -> torch.Tensor | None:
        """The cached embedding [1, C, h, w] (float32), or None."""
        path = self._path(model_input)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # absent, or damaged by something else: computed again
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(array.astype(np.float32))

    def put(self, model_input: torch.Tensor, embedding: torch.Tensor) -> None:
        """Store an embedding [1, C, h, w] as float16."""
        array = embedding.detach().to("cpu", torch.float16).numpy()
        atomic_write(self._path(model_input), lambda tmp: np.save(tmp, array, allow_pickle=False))
