"""Evaluation: the Segmenter protocol, the SAM-Med2D prompt protocol, reports (JSON, Markdown, CSV).

Only the torch-free protocol (``edge_medsam.evaluation.segmenter``) is imported eagerly, so the runtime can
implement it without torch; the rest loads on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from edge_medsam.runtime.protocol import Prediction, Segmenter

_LAZY = {
    "evaluate": "edge_medsam.evaluation.runner",
    "EvalReport": "edge_medsam.evaluation.report",
    "PROMPT_MODES": "edge_medsam.evaluation.protocol",
    "StudentSegmenter": "edge_medsam.evaluation.torch_segmenters",
    "TeacherSegmenter": "edge_medsam.evaluation.torch_segmenters",
    "segmenter_for": "edge_medsam.evaluation.torch_segmenters",
}

__all__ = ["PROMPT_MODES", "EvalReport", "Prediction", "Segmenter", "StudentSegmenter", "TeacherSegmenter",
           "evaluate", "segmenter_for"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
