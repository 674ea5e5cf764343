"""Backends behind one interface, and the choice of the best one for a bundle on this machine.

``backend="auto"`` picks, in order: TensorRT (where engines were built for the bundle and TensorRT is
importable), OpenVINO on Intel CPUs (or for an Intel GPU/NPU device), ONNX Runtime, and OpenVINO as the last
resort. None of the libraries is imported until a graph is loaded.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.runtime.backends.base import Backend, BackendOptions, GraphRunner
from edge_medsam.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edge_medsam.runtime.backends.openvino import OpenVinoBackend
from edge_medsam.runtime.backends.tensorrt import TensorRTBackend
from edge_medsam.runtime.bundle import Bundle
from edge_medsam.runtime.manifest import PRECISIONS

BACKENDS: dict[str, type[Backend]] = {"tensorrt": TensorRTBackend, "openvino": OpenVinoBackend,
                                      "onnxruntime": OnnxRuntimeBackend}
BACKEND_CHOICES = ("auto", *BACKENDS)
_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "trt": "tensorrt"}

__all__ = ["BACKENDS", "BACKEND_CHOICES", "Backend", "BackendOptions", "GraphRunner", "available_backends",
           "choose_backend", "is_intel_cpu"]


@cache
def is_intel_cpu() -> bool:
    """True on an Intel CPU (where OpenVINO is usually the fastest CPU backend)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        return "GenuineIntel" in text
    except OSError:
        return "intel" in platform.processor().lower()


def available_backends() -> list[str]:
    """Names of the backends whose libraries are installed here."""
    return [name for name, kind in BACKENDS.items() if kind().available()]


def _named(name: str) -> Backend:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in BACKENDS:
        raise EdgeMedSAMError(f"unknown backend {name!r}", fix=f"use one of {', '.join(BACKEND_CHOICES)}")
    return BACKENDS[key]()


def _auto_order(device: str | None) -> list[str]:
    """Candidates for a device: NVIDIA devices → TensorRT, ONNX Runtime; Intel GPU/NPU → OpenVINO; else all."""
    wanted = (device or "").strip().lower()
    cpu_order = ["openvino", "onnxruntime"] if is_intel_cpu() else ["onnxruntime", "openvino"]
    if wanted.startswith(("cuda", "tensorrt")):
        return ["tensorrt", "onnxruntime"]
    if wanted.split(".")[0] in ("gpu", "npu"):
        return ["openvino"]
    return cpu_order if wanted == "cpu" else ["tensorrt", *cpu_order]


def choose_backend(bundle: Bundle, name: str = "auto", precision: str = "fp32", device: str | None = None) -> Backend:
    """The backend to run ``bundle`` at ``precision``: the named one (checked) or the best available one."""
    if precision not in PRECISIONS:
        raise EdgeMedSAMError(f"unknown precision {precision!r}", fix=f"use one of {', '.join(PRECISIONS)}")
    if name.strip().lower() != "auto":
        backend = _named(name)
        backend.require()
        if not backend.can_run(bundle, precision):
            have = ", ".join(bundle.precisions()) or "none"
            raise EdgeMedSAMError(f"the bundle has no {precision} graphs for {backend.name}", path=bundle.source,
                                  fix=f"choose --precision from: {have}" if backend.name != "tensorrt"
                                  else "build the TensorRT engines on this device with the export/ tools")
        return backend
    for candidate in _auto_order(device):
        backend = BACKENDS[candidate]()
        if backend.available() and backend.can_run(bundle, precision):
            return backend
    installed = available_backends()
    if not installed:
        raise EdgeMedSAMError("no inference backend is installed",
                              fix="pip install 'edge-medsam[runtime]' (ONNX Runtime) or 'edge-medsam[openvino]'")
    have = ", ".join(bundle.precisions()) or "none"
    raise EdgeMedSAMError(f"no installed backend ({', '.join(installed)}) can run the bundle at {precision}",
                          path=bundle.source, fix=f"choose --precision from: {have}")
