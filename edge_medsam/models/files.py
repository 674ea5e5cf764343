"""Model files written by edge-medsam: weights plus the spec that rebuilds the model, loaded strictly.

A file is ``{"model": state_dict, "spec": {"kind": ..., ...}}``; files without a spec are taken for official
SAM / MedSAM / SAM-Med2D checkpoints and go through ``load_teacher``. Model families outside this module describe
themselves with a ``model_spec()`` method and are rebuilt by the ``module:function`` registered for their kind.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_medsam.engine.checkpoint import atomic_save, load_checkpoint
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.teachers import load_teacher

# kind → "module:function" that rebuilds a freshly initialised model from its spec (imported on first use).
KINDS: dict[str, str] = {
    "sam_teacher": "edge_medsam.models.teachers.sam:build_from_spec",
    "student": "edge_medsam.models.student.model:build_from_spec",
    "syncsam_teacher": "edge_medsam.models.teachers.syncsam:build_from_spec",
    "sam3d_teacher": "edge_medsam.models.teachers.sam3d:build_from_spec",
    "ka2er_teacher": "edge_medsam.models.teachers.ka2er:build_from_spec",
    "reference": "edge_medsam.models.reference:build_from_spec",
}


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The spec that rebuilds ``model`` (every model kind of ``KINDS`` has ``model_spec()``)."""
    if not hasattr(model, "model_spec"):
        raise TypeError(f"cannot describe a {type(model).__name__}")
    return model.model_spec()


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised model for ``spec``."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise EdgeMedSAMError(f"unknown model kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    module, function = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), function)(spec)


def save_model(model: nn.Module, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write weights + spec (+ ``extra`` metadata such as lineage or metrics) atomically."""
    return atomic_save({"model": model.state_dict(), "spec": model_spec(model), "extra": extra or {}}, path)


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Open an edge-medsam model file (or an official SAM-family checkpoint) in eval mode, strictly."""
    path = Path(path)
    if not path.is_file():
        raise EdgeMedSAMError("model file not found", path=path, fix="check the path (train or distil a model first)")
    state = load_checkpoint(path, map_location)
    spec = state.get("spec") if isinstance(state, dict) else None
    if spec is None:
        return load_teacher(path, map_location=map_location)
    model = build_from_spec(spec)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as err:
        raise EdgeMedSAMError(f"weights do not match the {spec.get('kind')} they claim to be "
                              f"({str(err).splitlines()[0][:160]})", path=path,
                              fix="re-export the model with this version of edge-medsam") from err
    return model.eval()
