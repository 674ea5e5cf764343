"""Torch models: SAM-family teachers (``teachers``), their building blocks (``sam``) and the edge student.

Names load on first use, so the torch-free settings (``models.student.config``) are checked without loading torch.
"""

from __future__ import annotations

from edge_medsam.lazy import lazy_names

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

__getattr__ = lazy_names(__name__, _LAZY)
