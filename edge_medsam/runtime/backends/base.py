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


GraphPorts = dict[str, tuple[str, list[int | None]]]  # name → (numpy dtype name, dims; None where dynamic)


def check_graph_io(bundle: Bundle, graph: str, path: Path, inputs: GraphPorts, outputs: GraphPorts) -> None:
    """Refuse a graph file whose inputs/outputs (names, dtypes, ranks, fixed sizes) are not the ones it declares.

    The manifest can say the right thing while the file is another graph (swapped, re-exported at another size,
    or foreign): running it would fail later with a backend error, or return nonsense.
    """
    dims = {str(k): int(v) for k, v in bundle.manifest.model.get("dims", {}).items()}
    for side, found in (("inputs", inputs), ("outputs", outputs)):
        for name, dtype, shape in GRAPH_IO[graph][side]:
            if name not in found:
                problem = f"has no {side[:-1]} {name!r} (it has {', '.join(sorted(found)) or 'none'})"
            else:
                have_dtype, have_dims = found[name]
                want = [d if isinstance(d, int) else dims.get(d) for d in shape]
                sizes_differ = len(have_dims) != len(want) or any(
                    w is not None and h is not None and w != h for w, h in zip(want, have_dims, strict=False))
                if have_dtype == dtype and not sizes_differ:
                    continue
                shown = ["?" if d is None else d for d in have_dims]
                problem = (f"{side[:-1]} {name!r} is {have_dtype} {shown}, the manifest declares {dtype} "
                           f"{['?' if d is None else d for d in want]}")
            raise EdgeMedSAMError(f"the {graph} graph file does not match the bundle's declared graph I/O: {problem}",
                                  path=path, fix="re-export the bundle; a graph file was replaced by another one")


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
