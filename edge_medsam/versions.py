"""Installed library versions, as lineages, caches and benchmark results record them."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

# The libraries an export's graphs depend on (its lineage, and the key of the benchmark's export cache).
EXPORT_LIBRARIES = ("torch", "timm", "onnx", "onnxscript", "onnxslim", "onnxruntime", "openvino", "nncf")
NOT_INSTALLED = "not installed"


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """Each library's installed version, or "not installed"."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = NOT_INSTALLED
    return found
