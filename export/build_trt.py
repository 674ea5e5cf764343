"""Build TensorRT engines from an edge-medsam bundle, on the device that will run them (Jetson or any NVIDIA GPU).

Needs only the Python standard library, TensorRT's Python bindings and the bundle folder:

    python3 build_trt.py BUNDLE [--precision fp16,int8] [--objects 1,4,32] [--points 1,4,16]

TensorRT 11 networks are strongly typed: precision comes from the graph (``*.fp16.onnx``, the QDQ
``*.int8.onnx``), and the removed builder flags are never touched. TensorRT 10 (JetPack 6) builds the same
files with builder flags by default (``--typing weak``: FP16 from the FP32 graph, INT8 from the QDQ graph with
the INT8 + FP16 flags) or, with ``--typing strong``, exactly as TensorRT 11 does.
Engines, a timing cache and ``engines.json`` (device, TensorRT version, settings, sha256) go to
``BUNDLE/tensorrt/`` unless ``--out`` says otherwise; the bundle's manifest does not list them (engines are
specific to one GPU and TensorRT version and are never shipped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

BUNDLE_FORMAT, BUNDLE_VERSION = "edge-medsam-bundle", 1
ENGINES_FORMAT, ENGINES_VERSION = "edge-medsam-tensorrt-engines", 1
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OBJECTS = (1, 4, 32)  # min, opt, max objects per decoder call
DEFAULT_POINTS = (1, 4, 16)  # min, opt, max points per object (a box is 2)


class BuildError(Exception):
    """A bundle or a build that cannot give a usable engine; the message names the file and the fix."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_bundle(bundle: Path) -> dict[str, Any]:
    """The bundle's manifest, after checking its format version and the sha256 of every ONNX file it lists."""
    path = bundle / "manifest.json"
    if not path.is_file():
        raise BuildError(f"{bundle}: no manifest.json (fix: point at a bundle folder made by `edge-medsam export`)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("format_version") != BUNDLE_VERSION:
        raise BuildError(f"{path}: not an edge-medsam bundle of format version {BUNDLE_VERSION} "
                         "(fix: re-export the bundle with a matching edge-medsam)")
    for graph in manifest["graphs"]:
        if graph["format"] != "onnx":
            continue
        for entry in graph["files"]:
            file = bundle / entry["file"]
            if not file.is_file() or _sha256(file) != entry["sha256"]:
                raise BuildError(f"{file}: missing or does not match its sha256 (fix: copy the bundle again)")
    return manifest


def onnx_source(manifest: dict[str, Any], graph: str, precision: str) -> str:
    """The bundle file holding ``graph`` at ``precision`` in ONNX format."""
    for entry in manifest["graphs"]:
        if (entry["graph"], entry["precision"], entry["format"]) == (graph, precision, "onnx"):
            return entry["files"][0]["file"]
    have = sorted({e["precision"] for e in manifest["graphs"] if e["format"] == "onnx" and e["graph"] == graph})
    raise BuildError(f"the bundle has no {precision} ONNX {graph} (fix: choose from {', '.join(have) or 'none'} "
                     "or re-export with --formats onnx --precision ...)")


@dataclass
class BuildPlan:
    """How one engine is built: from which ONNX file, typed how, with which builder flags."""

    graph: str
    precision: str
    source: str
    typing: str  # "strong": precision from the graph; "weak": TensorRT 10 builder flags
    flags: list[str] = field(default_factory=list)


def plan_builds(manifest: dict[str, Any], precisions: list[str], trt_major: int, typing: str = "weak") -> list[BuildPlan]:
    """One plan per graph and precision for a TensorRT major version (10: flags or strong typing; 11+: strong)."""
    typing = "strong" if trt_major >= 11 else typing
    plans = []
    for precision in precisions:
        for graph in ("encoder", "decoder"):
            if typing == "strong" or precision == "fp32":
                plans.append(BuildPlan(graph, precision, onnx_source(manifest, graph, precision), typing))
            elif precision == "fp16":
                plans.append(BuildPlan(graph, precision, onnx_source(manifest, graph, "fp32"), typing, ["FP16"]))
            else:  # explicit quantization with weak typing: the QDQ graph, INT8 on, FP16 for what stays float
                plans.append(BuildPlan(graph, precision, onnx_source(manifest, graph, "int8"), typing,
                                       ["INT8", "FP16"]))
    return plans


def _dims(manifest: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in manifest["model"]["dims"].items()}


def profile_shapes(manifest: dict[str, Any], graph: str, objects: tuple[int, int, int] = DEFAULT_OBJECTS,
                   points: tuple[int, int, int] = DEFAULT_POINTS) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) shapes of every input with a dynamic dimension ({} for the static encoder)."""
    limits = manifest["model"].get("dynamic", {})
    ranges = {"objects": objects, "points": points}
    for name, (low, opt, high) in ranges.items():
        top = limits.get(name, {}).get("max", high)
        if not 1 <= low <= opt <= high <= top:
            raise BuildError(f"{name} range {low},{opt},{high} must satisfy 1 <= min <= opt <= max <= {top}")
    dims = _dims(manifest)
    shapes = {}
    for name, _, shape in manifest["io"][graph]["inputs"]:
        if not any(d in ranges for d in shape):
            continue
        shapes[name] = tuple(tuple(ranges[d][i] if d in ranges else (dims[d] if isinstance(d, str) else d)
                                   for d in shape) for i in range(3))
    return shapes


def device_description() -> dict[str, str]:
    """The GPU's name and compute capability (nvidia-smi), or the Jetson board model."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            line = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"], check=True,
                                  capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
            name, capability = (part.strip() for part in line.split(",", 1))
            return {"name": name, "compute_capability": capability, "host": platform.node()}
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    model = Path("/proc/device-tree/model")
    name = model.read_text(errors="replace").strip("\x00\n ") if model.is_file() else "unknown"
    return {"name": name, "compute_capability": "unknown", "host": platform.node()}


def trt_major(trt: ModuleType) -> int:
    """TensorRT's major version number."""
    return int(str(trt.__version__).split(".")[0])


def build_engine(trt: ModuleType, plan: BuildPlan, bundle: Path, engine: Path, profile: dict[str, Any],
                 timing_cache: Path, workspace_mib: int = 1024, optimization_level: int = 3,
                 io: dict[str, Any] | None = None) -> None:
    """Parse, build and serialise one engine (TensorRT 10 or 11), updating the timing cache file."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.typing == "strong" and trt_major(trt) < 11:  # implied (and deprecated) from TensorRT 11 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    source = bundle / plan.source
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"{source}: TensorRT cannot parse the graph: {errors} (fix: check the opset/ops with "
                         "`polygraphy inspect capability`, or re-export with this edge-medsam)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.builder_optimization_level = optimization_level
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if profile:
        optimization_profile = builder.create_optimization_profile()
        for name, (low, opt, high) in profile.items():
            optimization_profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(optimization_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{source}: TensorRT could not build an engine (fix: see the TensorRT log above; try a "
                         "larger --workspace-mib)")
    _atomic_write(engine, bytes(serialized))
    _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    if io is not None:
        _check_engine_io(trt, logger, engine, io)


def _check_engine_io(trt: ModuleType, logger: Any, engine_path: Path, io: dict[str, Any]) -> None:
    """The engine's tensors must be the contract's inputs and outputs, by name."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    want = {n for n, _, _ in io["inputs"]} | {n for n, _, _ in io["outputs"]}
    if names != want:
        raise BuildError(f"{engine_path}: engine tensors {sorted(names)} differ from the bundle's {sorted(want)}")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temp, path)


def build_all(trt: ModuleType, bundle: Path, out: Path, precisions: list[str], typing: str = "weak",
              objects: tuple[int, int, int] = DEFAULT_OBJECTS, points: tuple[int, int, int] = DEFAULT_POINTS,
              workspace_mib: int = 1024, optimization_level: int = 3) -> dict[str, Any]:
    """Build every engine for ``precisions`` and write ``engines.json``; returns that record."""
    manifest = read_bundle(bundle)
    plans = plan_builds(manifest, precisions, trt_major(trt), typing)
    timing_cache = out / "timing.cache"
    record: dict[str, Any] = {
        "format": ENGINES_FORMAT, "format_version": ENGINES_VERSION, "tensorrt": str(trt.__version__),
        "device": device_description(), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle": {"name": manifest["name"], "version": manifest["version"],
                   "manifest_sha256": _sha256(bundle / "manifest.json")},
        "settings": {"typing": plans[0].typing if plans else typing, "objects": list(objects), "points": list(points),
                     "workspace_mib": workspace_mib, "optimization_level": optimization_level},
        "timing_cache": timing_cache.name, "engines": []}
    for plan in plans:
        engine = out / f"{plan.graph}.{plan.precision}.plan"
        profile = profile_shapes(manifest, plan.graph, objects, points)
        print(f"build_trt: {plan.graph} {plan.precision} from {plan.source} ({plan.typing} typing"
              f"{', flags ' + '+'.join(plan.flags) if plan.flags else ''}) …", flush=True)
        start = time.perf_counter()
        build_engine(trt, plan, bundle, engine, profile, timing_cache, workspace_mib, optimization_level,
                     manifest["io"][plan.graph])
        record["engines"].append({**asdict(plan), "file": engine.name, "sha256": _sha256(engine),
                                  "source_sha256": _sha256(bundle / plan.source),
                                  "profile": {k: [list(s) for s in v] for k, v in profile.items()},
                                  "build_seconds": round(time.perf_counter() - start, 1)})
    _atomic_write(out / "engines.json", (json.dumps(record, indent=2) + "\n").encode())
    return record


def _triple(text: str) -> tuple[int, int, int]:
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("give min,opt,max, e.g. 1,4,32")
    return parts  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """Command line: build the engines of a bundle; exit 2 with one line on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder (unzipped)")
    parser.add_argument("--out", type=Path, default=None, help="engine folder (default: BUNDLE/tensorrt)")
    parser.add_argument("--precision", default="fp16", help="comma-separated from fp32,fp16,int8 (default fp16)")
    parser.add_argument("--typing", choices=("weak", "strong"), default="weak",
                        help="TensorRT 10 only: builder flags (weak, default) or precision from the graph (strong)")
    parser.add_argument("--objects", type=_triple, default=DEFAULT_OBJECTS, help="decoder objects min,opt,max")
    parser.add_argument("--points", type=_triple, default=DEFAULT_POINTS, help="points per object min,opt,max")
    parser.add_argument("--workspace-mib", type=int, default=1024, help="builder workspace in MiB (default 1024)")
    parser.add_argument("--optimization-level", type=int, default=3, choices=range(6), help="0-5 (default 3)")
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    try:
        if unknown := [p for p in precisions if p not in PRECISIONS]:
            raise BuildError(f"unknown precision {unknown} (fix: use some of {', '.join(PRECISIONS)})")
        try:
            import tensorrt as trt
        except ImportError as err:
            raise BuildError(f"TensorRT's Python bindings are not installed ({err}) (fix: on Jetson `sudo apt "
                             "install python3-libnvinfer`; elsewhere install tensorrt from NVIDIA's index)") from err
        record = build_all(trt, args.bundle, args.out or args.bundle / "tensorrt", precisions, args.typing,
                           args.objects, args.points, args.workspace_mib, args.optimization_level)
    except (BuildError, OSError, json.JSONDecodeError, KeyError) as err:
        print(f"build_trt: error: {err}", file=sys.stderr)
        return 2
    print(f"build_trt: {len(record['engines'])} engines for TensorRT {record['tensorrt']} on "
          f"{record['device']['name']} in {args.out or args.bundle / 'tensorrt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
