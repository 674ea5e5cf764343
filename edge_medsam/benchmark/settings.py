"""What a benchmark run measures: subjects, backends, precisions, threads, batches, scenarios and sample counts.

Two presets: ``full`` (every student preset and every anchor at its native size, 1 and all cores, the
challenge's 287 x 512 x 512 CT case with 6 boxes) and ``quick`` (CI: one thread, a short volume, few samples,
no anchors unless asked). Every field can be overridden from the command line.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_medsam.benchmark.engines import BACKENDS
from edge_medsam.benchmark.machine import usable_cores
from edge_medsam.benchmark.timing import TimingPlan
from edge_medsam.errors import InputError
from edge_medsam.models.student.config import PRESETS

GRAPH_PRECISIONS = ("fp32", "fp16", "int8")  # the graph files a bundle holds
PRECISIONS = (*GRAPH_PRECISIONS, "bf16")  # bf16: the FP32 graph run in bf16 (OpenVINO, CPUs with bf16 kernels)


@dataclass(frozen=True)
class CTSettings:
    """The 3D case: slices x side of the volume, 3D boxes, the variants of ours measured end to end (``runs`` times
    each, through the runtime's VolumeSegmenter), the anchors measured end to end once (their FP32 graphs on
    ``backends``, the same protocol over the benchmark's pipeline); every variant is also projected from its
    per-call latencies."""

    slices: int = 287
    size: int = 512
    boxes: int = 6
    runs: int = 1
    backends: tuple[str, ...] = ("onnxruntime", "openvino")
    precisions: tuple[str, ...] = ("fp32", "int8")
    anchors: tuple[str, ...] = ("litemedsam",)  # reference names (a full 287-slice run of SAM ViT-B takes an hour)


@dataclass
class BenchSettings:
    """One benchmark run."""

    mode: str = "full"
    bundles: list[Path] = field(default_factory=list)
    compare_bundles: list[Path] = field(default_factory=list)  # other bundles, compared against ours like anchors
    presets: list[str] = field(default_factory=lambda: list(PRESETS))
    model_files: list[Path] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # input sizes for presets / model files (empty: native)
    anchors: list[str] | None = None  # reference names (edge_medsam.models.reference); None = every one
    backends: tuple[str, ...] = BACKENDS
    precisions: tuple[str, ...] = PRECISIONS
    threads: tuple[int, ...] = field(default_factory=lambda: tuple(sorted({1, usable_cores()})))
    anchor_threads: tuple[int, ...] = field(default_factory=lambda: tuple(sorted({1, usable_cores()})))
    batches: tuple[int, ...] = (1, 4)
    prompts: int = 10  # K prompts of the interactive scenario
    plan: TimingPlan = field(default_factory=lambda: TimingPlan(warmup=3, rounds=5, min_samples=5, budget_s=6.0))
    # At least one call per round (5), so that every anchor row has a median in each round: the noise band.
    anchor_plan: TimingPlan = field(default_factory=lambda: TimingPlan(warmup=1, rounds=5, min_samples=5, budget_s=20.0))
    ct: CTSettings = field(default_factory=CTSettings)
    coldstart_runs: int = 3
    coldstart_precisions: tuple[str, ...] = GRAPH_PRECISIONS
    accuracy_images: int = 24
    gemm_side: int = 2048  # side of the square FP32 GEMM that measures this machine's peak
    calib_images: int = 32
    out: Path = Path("benchmarks/results")  # relative to where it runs: a clone's benchmarks/results
    work: Path | None = None  # exported bundles and graphs (default: a folder in the system temp dir)
    note: str = ""
    plots: bool = True
    progress: bool = field(default_factory=lambda: sys.stderr.isatty())
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise InputError(f"unknown student presets {unknown}", fix=f"use presets from {', '.join(PRESETS)}")
        unknown = [b for b in self.backends if b not in BACKENDS] + [p for p in self.precisions if p not in PRECISIONS]
        if unknown:
            raise InputError(f"unknown backends or precisions {unknown}",
                             fix=f"use backends from {', '.join(BACKENDS)} and precisions from {', '.join(PRECISIONS)}")
        bad = [n for n in (*self.threads, *self.anchor_threads, *self.batches, self.prompts) if n < 1]
        if bad:
            raise InputError(f"thread counts, batch sizes and prompt counts must be at least 1, got {bad}",
                             fix="give positive integers")
        if not (self.bundles or self.presets or self.model_files):
            raise InputError("nothing of ours to benchmark", fix="give --bundle, --preset or --model")

    @property
    def max_threads(self) -> int:
        """The largest thread count (the one the ratio table and the 3D case use)."""
        return max(self.threads)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for the results."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()
                if k not in ("progress",)} | {"bundles": [str(b) for b in self.bundles],
                                              "compare_bundles": [str(b) for b in self.compare_bundles],
                                              "model_files": [str(m) for m in self.model_files]}


QUICK = {"mode": "quick", "presets": ["tiny"], "anchors": [], "threads": (1,), "anchor_threads": (1,), "batches": (1,),
         "prompts": 3, "plan": TimingPlan(warmup=1, rounds=2, min_samples=3, max_samples=20, budget_s=0.3),
         "anchor_plan": TimingPlan(warmup=1, rounds=2, min_samples=2, max_samples=5, budget_s=0.5),
         "ct": CTSettings(slices=8, size=96, boxes=2, precisions=("fp32",), anchors=()), "coldstart_runs": 1,
         "coldstart_precisions": ("fp32",), "accuracy_images": 2, "calib_images": 4, "gemm_side": 1024}


def preset_settings(mode: str, **overrides: Any) -> BenchSettings:
    """``full`` (every student preset, every anchor, the challenge's CT case) or ``quick`` (CI: about a minute on
    two cores), with ``overrides`` applied."""
    if mode not in ("full", "quick"):
        raise InputError(f"unknown benchmark mode {mode!r}", fix="use full or quick")
    return BenchSettings(**{**(QUICK if mode == "quick" else {}), **overrides})
