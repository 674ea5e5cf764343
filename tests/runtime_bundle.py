"""A real test bundle for the runtime's tests: the tiny student (random weights, seed 0) exported by torch here.

It reuses the exporter's graph wrappers (``edge_medsam.compress.graphs``) but none of its slimming,
quantization or parity machinery: ``torch.onnx.export(dynamo=True)`` with shared dynamic dimensions,
an OpenVINO IR converted from the ONNX, and
a manifest. Building takes about a minute, so the result is kept in a cache folder keyed by the sources it
depends on (``$EDGE_MEDSAM_TEST_CACHE``, default the system temp folder) and checked before reuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import warnings
from functools import cache
from importlib.metadata import version
from pathlib import Path

import pytest

import edge_medsam
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.modalities import MODALITIES
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.runtime.manifest import (
    DECODER_IO,
    ENCODER_IO,
    MANIFEST,
    GraphFile,
    GraphVariant,
    Manifest,
    intensity_section,
    verify_bundle,
)

ROOT = Path(edge_medsam.__file__).parent
SOURCES = [*sorted((ROOT / "models" / "student").glob("*.py")), ROOT / "models" / "prompt_maps.py",
           ROOT / "compress" / "graphs.py",
           ROOT / "runtime" / "manifest.py",
           ROOT / "modalities.py", ROOT / "preprocess.py", Path(__file__)]
LIMITS = {"objects": 64, "points": 32}


def _key() -> str:
    digest = hashlib.sha256(f"{version('torch')} {version('openvino')} {version('onnx')}".encode())
    for path in SOURCES:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _export(folder: Path) -> None:
    import openvino as ov
    import torch

    from edge_medsam.compress.graphs import DecoderGraph, EncoderGraph
    from edge_medsam.models.student import EdgeStudent, student_preset

    torch.manual_seed(0)
    student = EdgeStudent(student_preset("tiny")).eval()
    encoder, decoder = EncoderGraph(student).eval(), DecoderGraph(student).eval()
    size = student.config.image_size
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    modality = torch.tensor([-1], dtype=torch.int64)
    # The exporter narrates its stages on stdout and warns about the shared dynamic dims: not test output.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (image, modality), str(folder / "encoder.onnx"),
                          input_names=[n for n, _, _ in ENCODER_IO["inputs"]],
                          output_names=[n for n, _, _ in ENCODER_IO["outputs"]], dynamo=True, external_data=False,
                          opset_version=18)
        outputs = encoder(image, modality)
        embedding, skip8, skip4, dense, *_, used = outputs
        objects, points = 3, 4
        side = skip4.shape[-1]
        example = (embedding, skip8, skip4, dense, used, torch.rand(objects, points, 2) * size,
                   torch.tensor([[1.0, 0.0, 2.0, 3.0]] * objects), torch.zeros(objects, 1, side, side),
                   torch.zeros(objects), torch.ones(objects))
        n_obj = torch.export.Dim("objects", min=1, max=LIMITS["objects"])
        n_pts = torch.export.Dim("points", min=1, max=LIMITS["points"])
        dynamic = {"embedding": None, "skip8": None, "skip4": None, "dense_prompt": None, "modality_index": None,
                   "point_coords": {0: n_obj, 1: n_pts}, "point_labels": {0: n_obj, 1: n_pts},
                   "mask_input": {0: n_obj}, "has_mask_input": {0: n_obj}, "self_prompt_weight": {0: n_obj}}
        torch.onnx.export(decoder, example, str(folder / "decoder.onnx"),
                          input_names=[n for n, _, _ in DECODER_IO["inputs"]],
                          output_names=[n for n, _, _ in DECODER_IO["outputs"]], dynamo=True, external_data=False,
                          opset_version=18, dynamic_shapes=dynamic)
    (folder / "openvino").mkdir()
    for graph in ("encoder", "decoder"):
        ov.save_model(ov.convert_model(str(folder / f"{graph}.onnx")), str(folder / "openvino" / f"{graph}.xml"),
                      compress_to_fp16=False)
    config = student.config
    g = size // 16
    manifest = Manifest(
        name="test-tiny-student", version="0", modalities={m.name: m.index for m in MODALITIES},
        model={"kind": "student", "config": config.to_dict(),
               "dims": {"S": size, "g": g, "2g": 2 * g, "4g": 4 * g, "D": config.embed_dim, "C": config.skip_dim,
                        "M": config.modality_slots, "K": config.num_masks},
               "dynamic": {dim: {"min": 1, "max": limit} for dim, limit in LIMITS.items()}},
        preprocess=PreprocessConfig(size=size).to_dict(), intensity=intensity_section(),
        outputs={"masks": {"kind": "logits", "threshold": 0.0, "stride": 4, "size": 4 * g}},
        variants=[GraphVariant(graph, "fp32", "onnx", [GraphFile.of(folder, f"{graph}.onnx")])
                  for graph in ("encoder", "decoder")]
        + [GraphVariant(graph, "fp32", "openvino", [GraphFile.of(folder, f"openvino/{graph}.xml"),
                                                    GraphFile.of(folder, f"openvino/{graph}.bin")])
           for graph in ("encoder", "decoder")]
        # INT8 that the export kept in FP32 lists the FP32 file again: exercises precision selection cheaply.
        + [GraphVariant(graph, "int8", "onnx", [GraphFile.of(folder, f"{graph}.onnx")])
           for graph in ("encoder", "decoder")],
        lineage={"source": "tests/runtime_bundle.py", "seed": 0})
    write_manifest(folder, manifest)


def write_manifest(folder: Path, manifest: Manifest | dict) -> None:
    """Write manifest.json (a Manifest or an edited plain dict)."""
    data = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    (folder / MANIFEST).write_text(json.dumps(data, indent=1), encoding="utf-8")


@cache
def cached_bundle() -> Path:
    """The cached test bundle folder (built on first use; needs torch and openvino). Do not modify it."""
    for module in ("torch", "openvino", "onnx"):  # checked without importing: a cached bundle needs none of them
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the test bundle is exported from the student with {module}")
    cache_root = Path(os.environ.get("EDGE_MEDSAM_TEST_CACHE", Path(tempfile.gettempdir()) / "edge-medsam-test"))
    target = cache_root / f"bundle-{_key()}"
    if target.is_dir():
        try:
            verify_bundle(target)
            return target
        except EdgeMedSAMError:
            shutil.rmtree(target, ignore_errors=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=cache_root))
    try:
        _export(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another test process published the same bundle first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def copy_bundle(destination: Path) -> Path:
    """A private copy of the test bundle (for tests that damage or edit it)."""
    return Path(shutil.copytree(cached_bundle(), destination))
