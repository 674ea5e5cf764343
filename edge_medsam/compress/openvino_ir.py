"""OpenVINO IR from the exported ONNX (the most robust route: no second tracing of the torch model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_onnx(path: Path) -> Any:
    """The ONNX file as an ``openvino.Model`` (dynamic dimensions kept)."""
    import openvino as ov

    return ov.convert_model(str(path))


def save_ir(model: Any, xml: Path, fp16: bool = False) -> list[Path]:
    """Write ``xml`` + its ``.bin``; ``fp16`` stores weights in FP16 (storage precision, not compute precision)."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=fp16)
    return [xml, xml.with_suffix(".bin")]
