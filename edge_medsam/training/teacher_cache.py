"""Teacher embeddings on disk, keyed by content: sha256 of the teacher's identity and of the exact model input.

A real teacher costs about a second per image on two CPU cores; its embeddings are computed once and reused by
every stage and every later run that feeds it the same pixels, whatever the file names or dataset order. Entries
are float16 ``.npy`` files written atomically (write, then rename), so an interrupted run leaves no half entry.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_medsam.io.files import atomic_write, cache_root


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
        except (OSError, ValueError, EOFError):  # absent, or damaged by something else: computed again
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(array.astype(np.float32))

    def put(self, model_input: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Store an embedding [1, C, h, w] as float16; returns what ``get`` will return (a cold run and a warm
        one then compute with the same values)."""
        array = embedding.detach().to("cpu", torch.float16).numpy()
        atomic_write(self._path(model_input), lambda tmp: np.save(tmp, array, allow_pickle=False))
        return torch.from_numpy(array.astype(np.float32))


def onnx_encoder(teacher: nn.Module, root: str | os.PathLike[str] | None = None
                 ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The teacher's image encoder on ONNX Runtime (about 1.6x faster than PyTorch on two CPU cores), exported once
    into the cache by teacher identity and checked against PyTorch there; None for teachers without that export.
    """
    from edge_medsam.models.reference.base import SamDecoderReference

    if not isinstance(teacher, SamDecoderReference) or next(teacher.parameters()).device.type != "cpu":
        return None
    from edge_medsam.compress.reference_export import export_reference_onnx
    from edge_medsam.compress.runners import onnxruntime_runner

    folder = Path(root or cache_root()) / "teacher-encoders" / teacher_identity(teacher)[:16]
    path = folder / "encoder.onnx"
    if not path.is_file():  # exported into a scratch folder renamed into place: never half a graph in the cache
        scratch = folder.parent / f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{folder.name}"
        try:
            export_reference_onnx(teacher, scratch, graphs=("encoder",))
            if folder.exists() and not path.is_file():  # a crashed export's leftovers
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.rename(scratch, folder)
            except OSError:
                if not path.is_file():  # another process's export landed first: use it
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    run = onnxruntime_runner(path, threads=torch.get_num_threads())

    def encode(model_input: torch.Tensor) -> torch.Tensor:
        (embedding,) = run({"image": model_input.detach().cpu().numpy().astype(np.float32)}).values()
        return torch.from_numpy(embedding)

    return encode
