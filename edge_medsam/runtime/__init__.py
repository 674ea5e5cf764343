"""Torch-free inference: bundle reading and verification, numpy preprocessing, backends, predictor, volumes.

Nothing in this package imports torch (a test proves it): it runs on `pip install edge-medsam[runtime]`.

    from edge_medsam.runtime import Predictor
    predictor = Predictor.from_bundle("bundle/")            # or a .zip; backend="auto"
    predictor.set_image("image.png")
    masks = predictor.predict(boxes=[[10, 20, 80, 90]]).masks

Names load on first use, so ``edge_medsam.runtime.manifest`` (the exporter's contract) imports nothing else.
"""

from __future__ import annotations

from edge_medsam.lazy import lazy_names

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

__getattr__ = lazy_names(__name__, _LAZY)
