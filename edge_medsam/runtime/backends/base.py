"""What every backend provides: load a bundle graph at a precision and run it on named numpy arrays."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.runtime.bundle import Bundle
from edge_medsam.runtime.manifest import DECODER_IO, ENCODER_IO

HINTS = ("latency", "throughput")
GRAPH_IO = {"encoder": ENCODER_IO, "decoder": DECODER_IO}
GraphRunner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BackendOptions:
    """Where and how graphs run.

    ``device``: backend-specific ("cpu", "cuda", "cuda:1", "tensorrt" for ONNX Runtime; "CPU", "GPU", "NPU",
    "AUTO" for OpenVINO; "cuda:0" for TensorRT); None picks the backend's default. ``threads``: CPU threads per
    graph (None: the backend's default). ``hint``: "latency" (one image at a time) or "throughput" (OpenVINO).
    ``cache_dir``: compiled-model cache (OpenVINO model cache, ONNX Runtime TensorRT engine cache).
    """

    device: str | None = None
    threads: int | None = None
    hint: str = "latency"
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.hint not in HINTS:
            raise EdgeMedSAMError(f"unknown performance hint {self.hint!r}", fix=f"use one of {', '.join(HINTS)}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise EdgeMedSAMError(f"thread count {self.threads!r} is not a positive integer",
                                  fix="give threads=1 or more, or None for the backend's default")


def input_arrays(graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's inputs in contract order, as contiguous arrays of the contract dtypes."""
    return {name: np.ascontiguousarray(feeds[name], dtype=dtype) for name, dtype, _ in GRAPH_IO[graph]["inputs"]}


def output_names(graph: str) -> list[str]:
    """The graph's output names in contract order."""
    return [name for name, _, _ in GRAPH_IO[graph]["outputs"]]


class Backend(ABC):
    """A way to run bundle graphs. Subclasses import their library only when asked to load a graph."""

    name: str
    module: str  # the Python module whose presence makes the backend available
    install: str  # how to install it (the fix of "backend not installed")

    def available(self) -> bool:
        """Whether the backend's library is importable here (without importing it)."""
        return importlib.util.find_spec(self.module) is not None

    def require(self) -> None:
        """Raise an actionable error unless the backend's library is installed."""
        if not self.available():
            raise EdgeMedSAMError(f"the {self.name} backend is not installed (no module {self.module!r})",
                                  fix=self.install)

    @abstractmethod
    def can_run(self, bundle: Bundle, precision: str) -> bool:
        """Whether this bundle has (or, for TensorRT, was built into) files this backend runs at ``precision``."""

    @abstractmethod
    def load(self, bundle: Bundle, graph: str, precision: str, options: BackendOptions) -> GraphRunner:
        """A callable running ``graph`` ("encoder"/"decoder"): dict of named inputs → dict of named outputs."""

    def describe(self) -> str:
        """Where the last loaded graph runs (device, providers), for summaries."""
        return self.name


def load_failed(backend: str, path: Path, err: Exception, fix: str) -> EdgeMedSAMError:
    """The one-line error for a graph a backend cannot load."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    return EdgeMedSAMError(f"{backend} cannot load the graph: {first}", path=path, fix=fix)
