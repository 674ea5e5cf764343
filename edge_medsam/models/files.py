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
from edge_medsam.models.student import EdgeStudent, StudentConfig
from edge_medsam.models.teachers import build_sam, load_teacher
from edge_medsam.models.teachers.sam import SamTeacher

# kind → "module:function" that rebuilds a freshly initialised model from its spec (imported on first use).
EXTERNAL_KINDS: dict[str, str] = {
    "syncsam_teacher": "edge_medsam.models.teachers.syncsam:build_from_spec",
    "sam3d_teacher": "edge_medsam.models.teachers.sam3d:build_from_spec",
    "ka2er_teacher": "edge_medsam.models.teachers.ka2er:build_from_spec",
    "reference": "edge_medsam.models.reference:build_from_spec",
}
KINDS = ("sam_teacher", "student", *EXTERNAL_KINDS)


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The spec that rebuilds ``model`` (a SamTeacher, an EdgeStudent, or a model with ``model_spec()``)."""
    if hasattr(model, "model_spec"):
        return model.model_spec()
    if isinstance(model, SamTeacher):
        return {"kind": "sam_teacher", **model.config()}
    if isinstance(model, EdgeStudent):
        return {"kind": "student", "config": model.config.to_dict()}
    raise TypeError(f"cannot describe a {type(model).__name__}")


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised model for ``spec``."""
    kind = spec.get("kind")
    if kind == "sam_teacher":
        return build_sam(**{k: v for k, v in spec.items() if k != "kind"})
    if kind == "student":
        return EdgeStudent(StudentConfig.from_dict(spec["config"]))
    if kind in EXTERNAL_KINDS:
        module, function = EXTERNAL_KINDS[kind].split(":")
        return getattr(importlib.import_module(module), function)(spec)
    raise EdgeMedSAMError(f"unknown model kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")


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
