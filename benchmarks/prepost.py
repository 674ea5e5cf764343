"""Pre- and postprocessing against the model in the runtime's 2D case (issue 20), before and after the banded rewrite.

    python benchmarks/prepost.py                 # 9 interleaved rounds, ONNX Runtime at 1 and 2 threads
    python benchmarks/prepost.py --rounds 5 --reps 3

One process, the shipped demo bundle, a 512 x 512 synthetic CT slice (HU) and a 512 x 512 RGB image. Each round
runs every (image, threads, implementation) once per rep, in alternating order, so both implementations see the
same machine load; the tables give medians over rounds, and the ratio (pre + post) / total is taken per round,
side by side, before its median. "before" is the former implementation (dense float32 weight-matrix products
through BLAS, a three-channel copy of grey images, the unpadding matrices rebuilt per call), kept here only for
this comparison; "after" is the package. Both run inside ``Predictor`` (its own stage clock: normalise,
preprocess, encoder, decoder, postprocess), and the pieces are timed alone for the split of preprocessing.
Writes ``benchmarks/results/<machine>/prepost.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import numpy as np

from edge_medsam.benchmark.machine import describe_machine, load_average, machine_slug
from edge_medsam.benchmark.scenarios import ct_test_image
from edge_medsam.data.synth import generate_sample
from edge_medsam.io.files import atomic_write_text
from edge_medsam.modalities import normalise_intensity, resolve_window
from edge_medsam.preprocess import (
    PreprocessConfig,
    geometry_for,
    logits_to_original,
    resize_weights,
    to_model_input,
    unpad_weights,
)
from edge_medsam.runtime import Predictor
from edge_medsam.runtime.bundle import DEMO_BUNDLE

RESULTS = Path(__file__).parent / "results"
IMPLEMENTATIONS = ("before", "after")
RUNTIME_STAGES = ("normalise", "preprocess", "encoder", "decoder", "postprocess")
PREPOST = ("normalise", "preprocess", "postprocess")


# --- the former implementation (commit b368920), for comparison only ---------------------------------------------
def before_normalise(pixels: np.ndarray, modality: str, *, hounsfield: bool = False, window=None) -> np.ndarray:
    """CT window or 8-bit colour scaling, then a contiguous three-channel copy (the paths measured here)."""
    if hounsfield:
        centre, width = resolve_window(window)
        values = np.asarray(pixels)
        out = np.clip((values.astype(np.float32) - np.float32(centre - width / 2.0)) / np.float32(width), 0.0, 1.0)
        out = np.repeat(out[..., None], 3, axis=2)
    else:
        out = np.asarray(pixels)[..., :3].astype(np.float32) / 255.0
    return np.ascontiguousarray(out, dtype=np.float32)


def before_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    img = np.asarray(image, np.float32)
    wy = resize_weights(img.shape[0], height).astype(np.float32)
    wx = resize_weights(img.shape[1], width).astype(np.float32)
    out = np.tensordot(wy, img, axes=(1, 0))
    out = np.tensordot(wx, out, axes=(1, 1)).swapaxes(0, 1)
    return np.ascontiguousarray(out, dtype=np.float32)


def before_pad(resized: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    new_h, new_w = resized.shape[:2]
    normalised = (resized - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)
    out = np.zeros((1, 3, config.size, config.size), np.float32)
    out[0, :, :new_h, :new_w] = normalised.transpose(2, 0, 1)
    return out


def before_model_input(image: np.ndarray, config: PreprocessConfig):
    img = np.asarray(image, np.float32)
    geo = geometry_for(img.shape[0], img.shape[1], config.size, config.resize == "longest_side")
    return before_pad(before_resize(img, *geo.resized), config), geo


def before_logits(logits: np.ndarray, geometry) -> np.ndarray:
    arr = np.asarray(logits, np.float32)
    wy = unpad_weights(geometry, arr.shape[-2], 0).astype(np.float32)  # rebuilt per call, as it was
    wx = unpad_weights(geometry, arr.shape[-1], 1).astype(np.float32)
    return np.ascontiguousarray(np.matmul(np.matmul(wy, arr), wx.T), dtype=np.float32)


@contextlib.contextmanager
def implementation(name: str) -> Iterator[None]:
    """The runtime with the former pre/postprocessing patched in ("before"), or as it is ("after")."""
    if name == "after":
        yield
        return
    with mock.patch("edge_medsam.runtime.images.normalise_intensity", before_normalise), \
            mock.patch("edge_medsam.runtime.predictor.to_model_input", before_model_input), \
            mock.patch("edge_medsam.runtime.predictor.logits_to_original", before_logits):
        yield


# --- measuring ---------------------------------------------------------------------------------------------------
def test_images() -> dict[str, tuple[np.ndarray, str]]:
    """512 x 512 CT slice in HU and a 512 x 512 RGB (uint8) dermoscopy picture, both synthetic."""
    return {"CT 512² (HU)": (ct_test_image(512).pixels, "ct"),
            "RGB 512² (uint8)": (generate_sample("dermoscopy", 0, size=512).pixels, "dermoscopy")}


def runtime_case(predictor: Predictor, pixels: np.ndarray, modality: str) -> dict[str, float]:
    """The product's 2D case: set_image + a self-prompted predict; the predictor's own stage milliseconds."""
    predictor.set_image(pixels, modality=modality)
    stages = predictor.predict().latency_ms
    return {stage: stages.get(stage, 0.0) for stage in RUNTIME_STAGES}


def pieces(pixels: np.ndarray, modality: str, config: PreprocessConfig, logits: np.ndarray,
           name: str) -> dict[str, Callable[[], object]]:
    """Each pre/postprocessing step alone, on its real input."""
    hounsfield = modality == "ct"
    normalise = before_normalise if name == "before" else normalise_intensity
    image01 = normalise(pixels, modality, hounsfield=hounsfield)
    geometry = geometry_for(*pixels.shape[:2], config.size)
    upsampled = logits_to_original(logits, geometry)
    calls: dict[str, Callable[[], object]] = {"window / scale to [0, 1]": lambda: normalise(pixels, modality,
                                                                                           hounsfield=hounsfield)}
    if name == "before":
        resized = before_resize(image01, *geometry.resized)
        calls["resize"] = lambda: before_resize(image01, *geometry.resized)
        calls["mean/std + padding"] = lambda: before_pad(resized, config)
        calls["upsample chosen logits to 512²"] = lambda: before_logits(logits, geometry)
    else:
        calls["resize + mean/std + padding"] = lambda: to_model_input(image01, config)
        calls["upsample chosen logits to 512²"] = lambda: logits_to_original(logits, geometry)
    calls["threshold"] = lambda: upsampled > 0.0
    return calls


def timed_ms(call: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def median_spread(values: list[float]) -> str:
    arr = np.asarray(values)
    median = float(np.median(arr))
    spread = (np.percentile(arr, 75) - np.percentile(arr, 25)) / median * 100 if median > 0 else 0.0
    return f"{median:.2f} (±{spread / 2:.0f} %)"


def measure(rounds: int, reps: int, threads: list[int]) -> tuple[dict, dict]:
    predictors = {t: Predictor.from_bundle(DEMO_BUNDLE, backend="onnxruntime", threads=t) for t in threads}
    images = test_images()
    config = predictors[threads[0]].bundle.preprocess
    runtime: dict = {}
    split: dict = {}
    chosen: dict[str, np.ndarray] = {}
    for label, (pixels, modality) in images.items():
        predictor = predictors[threads[0]]
        predictor.set_image(pixels, modality=modality)
        chosen[label] = predictor.predict().low_res_logits
        for t in threads:  # warm-up: graph first runs, weight caches
            for name in IMPLEMENTATIONS:
                with implementation(name):
                    runtime_case(predictors[t], pixels, modality)
    for round_index in range(rounds):
        order = IMPLEMENTATIONS if round_index % 2 == 0 else IMPLEMENTATIONS[::-1]
        for label, (pixels, modality) in images.items():
            for t in threads:
                for name in order:
                    with implementation(name):
                        samples = [runtime_case(predictors[t], pixels, modality) for _ in range(reps)]
                    per_stage = {s: float(np.median([x[s] for x in samples])) for s in RUNTIME_STAGES}
                    total = sum(per_stage.values())
                    per_stage["total"] = total
                    per_stage["ratio"] = sum(per_stage[s] for s in PREPOST) / total * 100
                    for stage, value in per_stage.items():
                        runtime.setdefault((label, t, name, stage), []).append(value)
            for name in order:
                for piece, call in pieces(pixels, modality, config, chosen[label], name).items():
                    split.setdefault((label, name, piece), []).append(
                        float(np.median([timed_ms(call) for _ in range(reps)])))
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr)
    return runtime, split


def report(runtime: dict, split: dict, threads: list[int], rounds: int, reps: int, machine: dict,
           load_end: list[float] | None, command: str) -> str:
    labels = list(dict.fromkeys(key[0] for key in runtime))
    lines = [
        "# Pre- and postprocessing in the runtime's 2D case (issue 20)", "",
        f"`{command}` — {machine['cpu']}, {machine['usable_cores']} usable cores, flags "
        f"{' '.join(machine['key_flags'])}; numpy {machine['libraries'].get('numpy')}, onnxruntime "
        f"{machine['libraries'].get('onnxruntime')}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
        f"load average {machine['load_average_start']} at the start, {load_end} at the end (a shared machine: read the "
        "ratios, measured side by side, rather than the absolute milliseconds).", "",
        f"Shipped demo bundle (`{DEMO_BUNDLE.name}`, input 256², low-res logits 128²), ONNX Runtime FP32, self-prompted: "
        "`Predictor.set_image(pixels)` + `predict()`. "
        f"{rounds} interleaved rounds x {reps} reps; each cell is the median over rounds of the per-round median "
        "(± half the interquartile range across rounds, in % of the median). \"before\" = the former "
        "implementation (commit b368920, dense float32 BLAS products, three-channel grey copy, unpadding matrices "
        "rebuilt per call), kept in this script only; \"after\" = the package. The former BLAS products also "
        "wake OpenBLAS's thread pool (OPENBLAS_NUM_THREADS unset), whose spinning threads take cores from what runs "
        "next: ONNX Runtime's encoder in the \"before\" rows, and the steps timed alone right after them.", "",
        "## The runtime's stages (ms) and the share of pre + post", "",
        "| image | threads | impl | normalise | preprocess | encoder | decoder | postprocess | total | (pre + post) / total |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        for t in threads:
            for name in IMPLEMENTATIONS:
                cells = [median_spread(runtime[(label, t, name, s)]) for s in (*RUNTIME_STAGES, "total")]
                ratio = float(np.median(runtime[(label, t, name, "ratio")]))
                lines.append(f"| {label} | {t} | {name} | {' | '.join(cells)} | {ratio:.1f} % |")
    lines += ["", "## The pre/postprocessing steps alone (ms, one thread of numpy)", "",
              "| image | impl | step | ms |", "|---|---|---|---:|"]
    for (label, name, piece), values in split.items():
        lines.append(f"| {label} | {name} | {piece} | {median_spread(values)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (≥ 5)")
    parser.add_argument("--reps", type=int, default=3, help="calls per configuration and round")
    parser.add_argument("--threads", default="1,2", help="ONNX Runtime thread counts")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default results/<machine>/prepost.md)")
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    threads = [int(t) for t in args.threads.split(",")]
    machine = describe_machine()
    runtime, split = measure(args.rounds, args.reps, threads)
    command = "python benchmarks/prepost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(runtime, split, threads, args.rounds, args.reps, machine, load_average(), command.strip())
    out = args.out or RESULTS / machine_slug(machine) / "prepost.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
