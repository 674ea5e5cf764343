"""Cold start: a new Python process, from its launch to the first mask, and its peak resident memory.

The parent writes a spec, starts ``python -m edge_medsam.benchmark.coldstart SPEC`` and times the process from launch to
exit; the child imports only what a deployment imports (numpy + the backend; never torch), loads the
graphs, segments one CT slice and reports its own stage times and peak resident memory. Our bundles go through
the torch-free runtime (``Predictor.from_bundle`` → ``set_image`` → ``predict``: the product path); anchors, which have no
bundle, through the same numpy pre/postprocessing and the backend's own session around their two graphs.
The operating system's file cache is warm after the first launch; the first launch is reported apart.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # first thing: the child's own clock starts before its imports

import json  # noqa: E402 (imports are what is being timed)
import os  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM of its own address space (``ru_maxrss`` would also
    count the parent's memory at the fork that started it)."""
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _bundle_first_mask(spec: dict[str, Any], pixels: np.ndarray) -> dict[str, float]:
    from edge_medsam.runtime import Predictor

    marks = {"imports": time.perf_counter()}
    predictor = Predictor.from_bundle(spec["bundle"], backend=spec["backend"], precision=spec["precision"],
                                      threads=spec["threads"])
    marks["load"] = time.perf_counter()
    predictor.set_image(pixels, modality="ct")
    predictor.predict()
    marks["first_mask"] = time.perf_counter()
    return marks


def _graphs_first_mask(spec: dict[str, Any], pixels: np.ndarray) -> dict[str, float]:
    from edge_medsam.modalities import normalise_intensity
    from edge_medsam.preprocess import PreprocessConfig, logits_to_original, to_model_input

    marks = {}
    if spec["backend"] == "onnxruntime":
        import onnxruntime as ort

        marks["imports"] = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = spec["threads"]
        options.inter_op_num_threads = 1
        sessions = [ort.InferenceSession(spec[g], options, providers=["CPUExecutionProvider"])
                    for g in ("encoder", "decoder")]

        def runner(session: Any) -> Any:
            names = [o.name for o in session.get_outputs()]
            return lambda feeds: dict(zip(names, session.run(names, feeds), strict=True))

        encoder, decoder = (runner(s) for s in sessions)
    else:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        marks["imports"] = time.perf_counter()
        core = ov.Core()
        config = {hints.performance_mode: hints.PerformanceMode.LATENCY, props.inference_num_threads: spec["threads"],
                  hints.inference_precision: ov.Type.f32}
        compiled = [core.compile_model(spec[g], "CPU", config) for g in ("encoder", "decoder")]

        def runner(model: Any, names: list[str]) -> Any:
            request = model.create_infer_request()
            return lambda feeds: {n: np.array(v) for n, v in zip(names, request.infer(feeds).values(), strict=True)}

        encoder, decoder = (runner(m, spec[f"{g}_outputs"]) for m, g in zip(compiled, ("encoder", "decoder"),
                                                                            strict=True))
    with open(spec["feeds"], "rb") as handle:
        encoder_feed, image_name, prompter = pickle.load(handle)
    marks["load"] = time.perf_counter()
    model_input, geometry = to_model_input(normalise_intensity(pixels, "ct", hounsfield=True),
                                           PreprocessConfig.from_dict(spec["preprocess"]))
    encoded = encoder({**encoder_feed, image_name: model_input})
    box = geometry.boxes_to_model(np.asarray(spec["box"], np.float32)[None])
    logits = prompter.best_logits(decoder(prompter.feed(encoded, box)))
    _ = logits_to_original(logits, geometry) > 0
    marks["first_mask"] = time.perf_counter()
    return marks


def child(spec_path: str) -> None:
    """Run one cold start described by the JSON spec and print its report as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    pixels = np.load(spec["image"])
    run = _bundle_first_mask if spec["kind"] == "bundle" else _graphs_first_mask
    marks = run(spec, pixels)
    report = {stage: round((at - STARTED) * 1e3, 2) for stage, at in marks.items()}
    print(json.dumps({"since_interpreter_ms": report, "peak_rss_mb": round(_peak_rss_mb(), 1)}))


def spec_for(subject: Any, backend: str, precision: str, threads: int, pixels: Path, box: np.ndarray,
             workdir: Path) -> dict[str, Any]:
    """What a child needs for a subject (a ``edge_medsam.benchmark.subjects.Subject``): its bundle, or its graphs and their
    example feeds (pickled into ``workdir``), the slice (``pixels``, .npy) and, for anchors, the box prompt."""
    spec: dict[str, Any] = {"backend": backend, "precision": precision, "threads": threads, "image": str(pixels)}
    if subject.bundle is not None:
        return spec | {"kind": "bundle", "bundle": str(subject.bundle)}
    from edge_medsam.benchmark.subjects import graph_outputs  # here, not above: the child would pay for importing onnx

    pair = subject.variants[("openvino" if backend == "openvino" else "onnx", precision)]
    probe = subject.encoder_inputs(np.zeros((1, 3, subject.size, subject.size), np.float32))
    image_name = next(k for k, v in probe.items() if v.ndim == 4)
    feeds = workdir / f"coldstart-{subject.name}.pkl"
    with open(feeds, "wb") as handle:
        pickle.dump(({k: v for k, v in probe.items() if k != image_name}, image_name, subject.prompter), handle)
    return spec | {"kind": "graphs", "encoder": str(pair.encoder), "decoder": str(pair.decoder),
                   "encoder_outputs": graph_outputs(subject.reference_pair.encoder),
                   "decoder_outputs": graph_outputs(subject.reference_pair.decoder), "feeds": str(feeds),
                   "preprocess": subject.preprocess.to_dict(), "box": np.asarray(box).tolist()}


def launch(spec: dict[str, Any], workdir: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """Start a child for ``spec`` and return its wall time (launch → exit), its stages and peak memory."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"coldstart-{os.getpid()}-{time.time_ns()}.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "edge_medsam.benchmark.coldstart", str(spec_path)], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    finally:
        spec_path.unlink(missing_ok=True)
    wall = (time.perf_counter() - start) * 1e3
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        return {"status": "failed", "reason": lines[-1][:300]}
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"status": "ok", "wall_ms": round(wall, 1), **report}


if __name__ == "__main__":
    child(sys.argv[1])
