"""Torch-free inference: bundle reading and verification, numpy preprocessing, backends, predictor, volumes.

Nothing in this package imports torch (a test proves it): it runs on `pip install edge-medsam[runtime]`.

    from edge_medsam.runtime import Predictor
    predictor = Predictor.from_bundle("bundle/")            # or a .zip; backend="auto"
    predictor.set_image("image.png")
    masks = predictor.predict(boxes=[[10, 20, 80, 90]]).masks

Names load on first use, so ``edge_medsam.runtime.manifest`` (the exporter's contract) imports nothing else.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "available_backends": "backends",
    "Bundle": "bundle",
    "open_bundle": "bundle",
    "EncodedImage": "predictor",
    "Predictor": "predictor",
    "SegmentationResult": "predictor",
    "RuntimeSegmenter": "segmenter",
    "SlicePrompt": "volume",
    "VolumeResult": "volume",
    "VolumeSegmenter": "volume",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edge_medsam.runtime.{_LAZY[name]}"), name)
