"""Compression and export (torch side): a trained student → a verified model bundle.

``export_bundle(model_file, out, calib_dataset, ExportSettings(...))`` is what `edge-medsam export` runs;
``export_student_bundle`` does the same from an in-memory student and ready-made probes. Modules, one job each:
``graphs`` (the two export wrappers and the contract's sizes), ``onnx_export`` (dynamo export, onnxslim,
checks), ``fp16``, ``openvino_ir``, ``quantize`` (NNCF INT8, symmetric QDQ), ``probes`` (calibration and
held-out images with prompts), ``runners`` + ``parity`` (measurements against PyTorch FP32), ``bundle``
(atomic writing), ``pipeline`` (the steps in order). ``settings`` (ExportSettings) imports no torch: names load
on first use, so recipes check their ``export:`` section without loading the exporter.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"ExportReport": "pipeline", "ExportSettings": "settings", "export_bundle": "pipeline",
         "export_student_bundle": "pipeline"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edge_medsam.compress.{_LAZY[name]}"), name)
