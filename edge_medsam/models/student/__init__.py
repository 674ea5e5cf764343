"""The edge student model (semi-shared encoder, SPPG self-prompt, QDMD decoder).

Names load on first use: ``config`` (StudentConfig, the presets) imports no torch, so recipes check
``student.overrides`` when they load.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"PRESETS": "config", "StudentConfig": "config", "student_preset": "config", "EdgeStudent": "model"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edge_medsam.models.student.{_LAZY[name]}"), name)
