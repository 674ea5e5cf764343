"""Torch models: SAM-family teachers (``teachers``), their building blocks (``sam``) and the edge student.

Names load on first use, so the torch-free settings (``models.student.config``) are checked without loading torch.
"""

from __future__ import annotations

from edge_medsam.lazy import lazy_names

_TEACHER_NAMES = ("Teacher", "TeacherFeatures", "TeacherProfile", "build_sam", "get_profile", "load_teacher")
_LAZY = {**dict.fromkeys(_TEACHER_NAMES, "teachers"), "sanitise_checkpoint": "sam.checkpoint"}

__all__ = sorted(_LAZY)

__getattr__ = lazy_names(__name__, _LAZY)
