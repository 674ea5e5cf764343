"""Compression and export (torch side): a trained student → a verified model bundle.

``export_bundle(model_file, out, calib_dataset, ExportSettings(...))`` is what `edge-medsam export` runs;
``export_student_bundle`` does the same from an in-memory student and ready-made probes. Modules, one job each:
``graphs`` (the two export wrappers and the contract's sizes), ``onnx_export`` (dynamo export, onnxslim,
checks), ``fp16``, ``openvino_ir``, ``quantize`` (NNCF INT8, symmetric QDQ), ``probes`` (calibration and
held-out images with prompts), ``runners`` + ``parity`` (measurements against PyTorch FP32), ``bundle``
(atomic writing), ``pipeline`` (the steps in order).
"""

from edge_medsam.compress.pipeline import ExportReport, ExportSettings, export_bundle, export_student_bundle

__all__ = ["ExportReport", "ExportSettings", "export_bundle", "export_student_bundle"]
