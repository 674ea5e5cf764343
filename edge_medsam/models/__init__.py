"""Torch models: SAM-family teachers (``teachers``), their building blocks (``sam``) and the edge student.

Names load on first use, so the torch-free settings (``models.student.config``) are checked without loading torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Teacher": "teachers",
    "TeacherFeatures": "teachers",
    "TeacherProfile": "teachers",
    "build_sam": "teachers",
    "get_profile": "teachers",
    "load_teacher": "teachers",
    "sanitise_checkpoint": "sam.checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edge_medsam.models.{_LAZY[name]}"), name)
