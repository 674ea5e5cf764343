"""The edge student model (semi-shared encoder, SPPG self-prompt, QDMD decoder).

Names load on first use: ``config`` (StudentConfig, the presets) imports no torch, so recipes check
``student.overrides`` when they load.
"""

from __future__ import annotations

from edge_medsam.lazy import lazy_names

_LAZY = {"PRESETS": "config", "StudentConfig": "config", "student_preset": "config", "EdgeStudent": "model"}

__all__ = sorted(_LAZY)

__getattr__ = lazy_names(__name__, _LAZY)
