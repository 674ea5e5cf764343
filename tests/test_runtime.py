"""The torch-free runtime: bundle checks, backends, the predictor, and a run with torch made unimportable."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from runtime_bundle import cached_bundle, copy_bundle, write_manifest

from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io import Image2D
from edge_medsam.modalities import get_modality
from edge_medsam.runtime import Predictor, RuntimeSegmenter, open_bundle
from edge_medsam.runtime.backends import choose_backend
from edge_medsam.runtime.backends.tensorrt import TensorRTBackend, _EngineRunner, engine_file
from edge_medsam.runtime.images import plan_modality, window_for
from edge_medsam.runtime.manifest import MANIFEST
from edge_medsam.runtime.protocol import Prediction, Segmenter

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle() -> Path:
    return cached_bundle()


@pytest.fixture(scope="module")
def ort(bundle: Path) -> Predictor:
    return Predictor.from_bundle(bundle, backend="onnxruntime", threads=2)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    yy, xx = np.mgrid[:150, :200]
    disc = (yy - 70) ** 2 + (xx - 90) ** 2 < 40**2
    noise = np.random.default_rng(0).normal(0, 10, disc.shape)
    return np.clip(60 + 120 * disc + noise, 0, 255).astype(np.uint8)


# --- bundles ---------------------------------------------------------------------------------------------------
def test_bundle_opens_with_its_preprocessing(bundle: Path) -> None:
    opened = open_bundle(bundle)
    assert opened.preprocess.size == 256 and opened.low_res_size == 64
    assert opened.precisions("onnx") == ["fp32", "int8"] and opened.precisions("openvino") == ["fp32"]
    assert opened.engine_dir == bundle / "tensorrt"


def test_changed_byte_is_refused_naming_the_file(bundle: Path, tmp_path: Path) -> None:
    copy = copy_bundle(tmp_path / "b")
    data = bytearray((copy / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(EdgeMedSAMError, match=r"decoder\.onnx does not match its sha256") as err:
        Predictor.from_bundle(copy, backend="onnxruntime")
    assert err.value.fix and "copy the bundle again" in err.value.fix
    # The OpenVINO variant's files are intact, so that backend still runs from the same bundle.
    Predictor.from_bundle(copy, backend="openvino")


def test_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    copy = copy_bundle(tmp_path / "b")
    (copy / "openvino" / "encoder.bin").unlink()
    with pytest.raises(EdgeMedSAMError, match=r"graph file openvino/encoder\.bin is missing"):
        Predictor.from_bundle(copy, backend="openvino")


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    copy = copy_bundle(tmp_path / "b")
    data = json.loads((copy / MANIFEST).read_text())
    data["format_version"] = 99
    write_manifest(copy, data)
    with pytest.raises(EdgeMedSAMError, match="format version 99 is not 1") as err:
        open_bundle(copy)
    assert str(copy) in str(err.value)


def test_other_graph_contract_is_refused(tmp_path: Path) -> None:
    copy = copy_bundle(tmp_path / "b")
    data = json.loads((copy / MANIFEST).read_text())
    data["io"]["decoder"]["inputs"][0][0] = "image_embeddings"
    write_manifest(copy, data)
    with pytest.raises(EdgeMedSAMError, match="decoder inputs/outputs differ"):
        open_bundle(copy)


def test_zipped_bundle_is_unpacked_once_and_runs(tmp_path: Path, image: np.ndarray) -> None:
    archive = tmp_path / "bundle.zip"
    source = cached_bundle()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            zf.write(path, f"model/{path.relative_to(source).as_posix()}")  # a zipped folder, not its files
    predictor = Predictor.from_bundle(archive, backend="onnxruntime", cache_dir=tmp_path / "cache")
    assert predictor.bundle.root.parent.parent == tmp_path / "cache" / "bundles"
    assert predictor.bundle.engine_dir == tmp_path / "bundle.zip.tensorrt"
    predictor.set_image(image)
    assert predictor.predict(boxes=[50, 30, 130, 110]).masks.shape == (1, 150, 200)
    assert open_bundle(archive, cache_dir=tmp_path / "cache").root == predictor.bundle.root


def test_unsafe_or_broken_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(EdgeMedSAMError, match="outside the archive"):
        open_bundle(archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "outside.txt").exists()
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(EdgeMedSAMError, match=r"bundle folder nor a \.zip|not a readable zip"):
        open_bundle(truncated, cache_dir=tmp_path / "cache")
    with pytest.raises(EdgeMedSAMError, match="does not exist"):
        open_bundle(tmp_path / "nowhere")


# --- backends ---------------------------------------------------------------------------------------------------
def test_auto_backend_and_precision_choice(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = open_bundle(bundle)
    monkeypatch.setattr("edge_medsam.runtime.backends.is_intel_cpu", lambda: False)
    assert choose_backend(opened).name == "onnxruntime"
    monkeypatch.setattr("edge_medsam.runtime.backends.is_intel_cpu", lambda: True)
    assert choose_backend(opened).name == "openvino"
    assert choose_backend(opened, precision="int8").name == "openvino"  # no int8 IR: OpenVINO reads the ONNX
    with pytest.raises(EdgeMedSAMError, match="no fp16 graphs for onnxruntime") as err:
        choose_backend(opened, "onnxruntime", "fp16")
    assert "fp32, int8" in str(err.value)
    with pytest.raises(EdgeMedSAMError, match="unknown backend 'coreml'"):
        choose_backend(opened, "coreml")


def test_missing_backend_names_the_pip_extra(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(EdgeMedSAMError, match=r"openvino backend is not installed.*edge-medsam\[openvino\]"):
        Predictor.from_bundle(bundle, backend="openvino")


def test_tensorrt_needs_engines_built_on_the_device(bundle: Path, tmp_path: Path) -> None:
    opened = open_bundle(bundle, engine_dir=tmp_path)
    backend = TensorRTBackend()
    assert not backend.can_run(opened, "fp32")
    for graph in ("encoder", "decoder"):
        engine_file(tmp_path, graph, "fp32").write_bytes(b"plan")
    assert backend.can_run(opened, "fp32")
    if not backend.available():
        with pytest.raises(EdgeMedSAMError, match="tensorrt backend is not installed") as err:
            choose_backend(opened, "tensorrt")
        assert "cuda-python" in str(err.value)


class FakeCudart:
    """cuda-python's runtime calls the engine runner makes, over host bytearrays standing for device memory."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self) -> None:
        self.memory: dict[int, bytearray] = {}
        self.mallocs, self.frees, self._next = 0, 0, 4096

    def cudaStreamCreate(self):
        return 0, 7

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaMalloc(self, nbytes):
        self._next += 4096 + nbytes
        self.memory[self._next] = bytearray(nbytes)
        self.mallocs += 1
        return 0, self._next

    def cudaFree(self, pointer):
        del self.memory[pointer]
        self.frees += 1
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.memory[dst][:nbytes] = ctypes.string_at(src, nbytes)
        else:
            ctypes.memmove(dst, bytes(self.memory[src][:nbytes]), nbytes)
        return (0,)


class FakeEngine:
    """A TensorRT engine and its execution context that run a GraphRunner on what lies in device memory."""

    def __init__(self, graph: str, run, cudart: FakeCudart, max_objects: int):
        from edge_medsam.runtime.backends.base import GRAPH_IO

        self.ports = {name: np.dtype(dtype) for kind in ("inputs", "outputs") for name, dtype, _ in GRAPH_IO[graph][kind]}
        self.inputs = [name for name, _, _ in GRAPH_IO[graph]["inputs"]]
        self.run, self.cudart, self.max_objects = run, cudart, max_objects
        self.num_io_tensors = len(self.ports)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.results: dict[str, np.ndarray] | None = None

    def get_tensor_name(self, index: int) -> str:
        return list(self.ports)[index]

    def get_tensor_dtype(self, name: str) -> np.dtype:
        return self.ports[name]

    def create_execution_context(self) -> FakeEngine:
        return self

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name], self.results = tuple(shape), None
        return name != "point_coords" or shape[0] <= self.max_objects  # the optimisation profile's range

    def set_tensor_address(self, name: str, pointer: int) -> None:
        self.addresses[name] = pointer

    def _device(self, name: str) -> np.ndarray:
        return np.frombuffer(self.cudart.memory[self.addresses[name]], self.ports[name])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self.results is None:  # TensorRT infers output shapes from the input shapes (and shape tensors)
            count = {name: int(np.prod(self.shapes[name])) for name in self.inputs}
            self.results = self.run({name: self._device(name)[:count[name]].reshape(self.shapes[name])
                                     for name in self.inputs})
        return self.results[name].shape

    def execute_async_v3(self, stream: int) -> bool:
        for name, value in self.results.items():
            self.cudart.memory[self.addresses[name]][:value.nbytes] = np.ascontiguousarray(value, self.ports[name]).tobytes()
        return True


def test_tensorrt_engine_runner_feeds_reuses_and_frees_device_buffers(ort: Predictor, image: np.ndarray) -> None:
    """_EngineRunner over a fake engine and CUDA runtime (no GPU here): the same masks as the ONNX Runtime decoder,
    device buffers grown only when a call needs more bytes, a shape outside the engine's profile refused."""
    cudart = FakeCudart()
    engine = FakeEngine("decoder", ort._decoder, cudart, max_objects=3)
    runner = _EngineRunner(engine, "decoder", cudart, SimpleNamespace(nptype=np.dtype))
    trt = Predictor(ort.bundle, TensorRTBackend(), ort._encoder, runner, "fp32")
    encoded = ort.set_image(image)
    trt.set_encoded(encoded)
    for boxes in ([[50, 30, 130, 110]], [[50, 30, 130, 110], [0, 0, 60, 40], [120, 80, 200, 150]]):
        expected, got = ort.predict(boxes=boxes, multimask=True), trt.predict(boxes=boxes, multimask=True)
        np.testing.assert_array_equal(got.low_res_logits, expected.low_res_logits)
        np.testing.assert_array_equal(got.scores, expected.scores)
    grown = cudart.mallocs
    assert grown > len(engine.ports) and cudart.frees == grown - len(engine.ports)  # the larger call regrew some
    trt.predict(boxes=[[0, 0, 60, 40]])
    assert cudart.mallocs == grown  # a smaller call fits in the buffers it has
    with pytest.raises(EdgeMedSAMError, match="does not accept point_coords of shape"):
        trt.predict(boxes=[[0, 0, 60, 40]] * 4)
    del trt, runner
    assert not cudart.memory  # every device buffer freed with the runner


def test_onnxruntime_and_openvino_agree(bundle: Path, ort: Predictor, image: np.ndarray) -> None:
    ov = Predictor.from_bundle(bundle, backend="openvino", threads=2)
    boxes = [[50, 30, 130, 110], [0, 0, 60, 40], [120, 80, 200, 150]]
    results = []
    for predictor in (ort, ov):
        encoded = predictor.set_image(image, modality="auto")
        results.append((encoded, predictor.predict(boxes=boxes), predictor.predict()))
    (e1, boxed1, auto1), (e2, boxed2, auto2) = results
    assert e1.modality == e2.modality and e1.modality_confidence == pytest.approx(e2.modality_confidence, abs=1e-4)
    for a, b in ((boxed1, boxed2), (auto1, auto2)):
        np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        assert (a.masks != b.masks).mean() < 1e-3


# --- predictor ----------------------------------------------------------------------------------------------------
def test_k_prompts_on_one_image_cost_one_encoder_run(ort: Predictor, image: np.ndarray) -> None:
    runs, decodes = ort.encoder_runs, ort.decoder_runs
    encoded = ort.set_image(image)
    first = ort.predict(boxes=[[50, 30, 130, 110], [10, 10, 40, 40]])
    ort.predict(points=[[90, 70]], labels=[1])
    ort.predict(points=[[90, 70], [10, 10]], labels=[1, 0], boxes=[50, 30, 130, 110], mask=first.low_res_logits[:1])
    ort.predict()
    ort.predict(boxes=[[50, 30, 130, 110]], multimask=True)
    assert ort.encoder_runs - runs == 1 and ort.decoder_runs - decodes == 5
    assert set(encoded.latency_ms) == {"read", "normalise", "preprocess", "encoder"}


def test_result_is_in_the_original_geometry(ort: Predictor, image: np.ndarray) -> None:
    ort.set_image(Image2D(pixels=image, modality="ultrasound"))
    result = ort.predict(boxes=[[50, 30, 130, 110], [0, 0, 60, 40]])
    assert result.masks.shape == (2, 150, 200) and result.masks.dtype == bool
    assert result.scores.shape == (2,) and result.low_res_logits.shape == (2, 1, 64, 64)
    assert (result.modality, result.modality_source, result.modality_index) == ("ultrasound", "file", 4)
    assert {"encoder", "decoder", "postprocess"} <= set(result.latency_ms)
    labels = result.label_map()
    assert labels.shape == (150, 200) and set(np.unique(labels)) <= {0, 1, 2}
    multi = ort.predict(boxes=[[50, 30, 130, 110]], multimask=True)
    assert multi.masks.shape == (1, 3, 150, 200) and multi.scores.shape == (1, 3)
    best = int(multi.scores[0].argmax())
    np.testing.assert_array_equal(multi.masks[0, best], ort.predict(boxes=[[50, 30, 130, 110]]).masks[0])


def test_modality_given_by_name_or_index_and_windows(ort: Predictor, bundle: Path) -> None:
    hu = np.full((64, 80), -1000.0, np.float32)
    hu[20:40, 20:60] = 40.0
    encoded = ort.set_image(hu, modality="auto")
    assert encoded.modality_source == "model" and encoded.modality_index >= 0
    assert ort.set_image(hu, modality=1).modality == "mr"
    assert ort.set_image(hu, modality="computed_tomography", window="lung").modality_source == "given"
    opened = open_bundle(bundle)
    assert window_for(opened, None) == (40.0, 400.0)
    assert window_for(opened, "bone") == (400.0, 1800.0) and window_for(opened, "50,350") == (50.0, 350.0)
    plan = plan_modality(Image2D(pixels=hu), "auto", opened)
    assert plan.rule.name == "ct" and plan.hounsfield and plan.index == -1
    with pytest.raises(InputError, match="unknown CT window"):
        ort.set_image(hu, modality="ct", window="nope")
    with pytest.raises(InputError, match="unknown modality"):
        ort.set_image(hu, modality="sonar")


@pytest.mark.parametrize(("prompts", "message"), [
    ({"boxes": [[-5, 0, 20, 20]]}, "outside the 200x150 image"),
    ({"points": [[10, 400]], "labels": [1]}, "outside the 200x150 image"),
    ({"points": [[10, 10]], "labels": [7]}, "are not 1, 0"),
    ({"points": [[10, 10]]}, "must come together"),
    ({"boxes": [[30, 30, 10, 10]]}, "maximum before its minimum"),
    ({"boxes": [[0, 0, 9, 9], [1, 1, 5, 5]], "points": [[3, 3]], "labels": [1]}, "which object"),
    ({"boxes": [[0, 0, 9, 9]], "mask": np.zeros((2, 1, 64, 64))}, "disagree on the number of objects"),
    ({"mask": np.zeros((1, 1, 32, 32))}, "low-res logits"),
    ({"boxes": [[0, 0, 9, 9]], "auto": True}, "auto=True corrects .* but boxes"),
    ({"points": [[[3, 3]], [[5, 5]]], "labels": [[1], [1]], "auto": True}, "for 2 objects"),
    ({"auto": False}, "no prompt given"),
])
def test_bad_prompts_are_refused(ort: Predictor, image: np.ndarray, prompts: dict, message: str) -> None:
    ort.set_image(image)
    with pytest.raises(InputError, match=message):
        ort.predict(**prompts)


def test_bad_images_are_refused_with_the_file(ort: Predictor, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="NaN or Inf"):
        ort.set_image(np.full((20, 20), np.nan, np.float32))
    with pytest.raises(InputError, match="neither"):
        ort.set_image(np.zeros((4, 4, 4, 4)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    with pytest.raises(InputError) as err:
        ort.set_image(broken)
    assert str(broken) in str(err.value)
    fresh = Predictor.from_bundle(ort.bundle, backend="onnxruntime")
    with pytest.raises(EdgeMedSAMError, match="no image is set"):
        fresh.predict()


def test_int8_precision_uses_the_int8_variant(bundle: Path, image: np.ndarray) -> None:
    predictor = Predictor.from_bundle(bundle, backend="auto", precision="int8", device="cpu")
    assert predictor.precision == "int8" and ("encoder", "int8", "onnx") in predictor.bundle._verified
    predictor.set_image(image)
    assert predictor.predict().masks.shape == (1, 150, 200)


def test_runtime_segmenter_follows_the_evaluation_protocol(ort: Predictor, image: np.ndarray) -> None:
    segmenter = RuntimeSegmenter(ort)
    assert isinstance(segmenter, Segmenter) and segmenter.supports_auto
    image01 = np.repeat((image / 255.0).astype(np.float32)[..., None], 3, axis=2)
    segmenter.set_image(image01, None)
    assert segmenter.detected_modality is not None
    segmenter.set_image(image01, get_modality("xray"))
    assert segmenter.detected_modality.name == "xray"
    prediction = segmenter.predict(boxes=np.array([[50, 30, 130, 110]], np.float32),
                                   points=np.array([[[90, 70]]], np.float32), point_labels=np.array([[1]]))
    assert isinstance(prediction, Prediction) and prediction.masks_logits.shape == (1, 150, 200)
    assert prediction.low_res.shape == (1, 1, 64, 64) and len(prediction) == 1
    refined = segmenter.predict(mask_input=prediction.low_res)
    assert refined.masks.shape == (1, 150, 200)
    assert len(segmenter.predict()) == 0 and segmenter.predict_auto().masks.shape == (1, 150, 200)


def _recording_weights(predictor: Predictor) -> list[list[float]]:
    """Record the ``self_prompt_weight`` feed of every decoder call of ``predictor``."""
    seen: list[list[float]] = []
    run = predictor._decoder
    predictor._decoder = lambda feeds: seen.append(feeds["self_prompt_weight"].tolist()) or run(feeds)
    return seen


def test_prompted_objects_and_corrections_of_the_automatic_mask_are_told_apart(bundle: Path,
                                                                                image: np.ndarray) -> None:
    predictor = Predictor.from_bundle(bundle, backend="onnxruntime", threads=1)
    assert predictor.prompted_weight == 0.0  # the student's config, recorded in the manifest
    seen = _recording_weights(predictor)
    predictor.set_image(image)
    automatic = predictor.predict()
    predictor.predict(boxes=[[50, 30, 130, 110], [0, 0, 60, 40]])
    corrected = predictor.predict(points=[[90, 70]], labels=[1], mask=automatic.low_res_logits[0], auto=True)
    assert seen == [[1.0], [0.0, 0.0], [1.0]] and corrected.masks.shape == (1, 150, 200)
    segmenter = RuntimeSegmenter(predictor)
    segmenter.set_image(np.repeat((image / 255.0).astype(np.float32)[..., None], 3, axis=2), None)
    start = segmenter.predict_auto()
    segmenter.predict_auto(points=np.array([[[90, 70]]], np.float32), point_labels=np.array([[1]]),
                           mask_input=start.low_res)
    segmenter.predict(points=np.array([[[90, 70]]], np.float32), point_labels=np.array([[1]]))
    assert seen[3:] == [[1.0], [1.0], [0.0]]


def test_a_bundle_made_before_the_setting_keeps_the_self_prompt_on_prompted_objects(tmp_path: Path) -> None:
    legacy = copy_bundle(tmp_path / "legacy")
    manifest = json.loads((legacy / MANIFEST).read_text())
    del manifest["model"]["config"]["prompted_self_prompt_weight"]
    write_manifest(legacy, manifest)
    predictor = Predictor.from_bundle(legacy, backend="onnxruntime", threads=1)
    seen = _recording_weights(predictor)
    predictor.set_image(np.zeros((64, 64), np.uint8))
    predictor.predict(boxes=[[4, 4, 30, 30]])
    assert predictor.prompted_weight == 1.0 and seen == [[1.0]]


def test_runs_end_to_end_with_torch_unimportable(bundle: Path, tmp_path: Path) -> None:
    """A subprocess where `import torch` fails reads a PNG, predicts on both backends and runs the CLI."""
    from PIL import Image

    picture = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120), dtype=np.uint8)).save(picture)
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from edge_medsam.runtime import Predictor, VolumeSegmenter
from edge_medsam.cli import main
for backend in ("onnxruntime", "openvino"):
    predictor = Predictor.from_bundle({str(bundle)!r}, backend=backend)
    predictor.set_image({str(picture)!r})
    assert predictor.predict(boxes=[[10, 10, 60, 50]]).masks.shape == (1, 90, 120)
code = main(["predict", {str(picture)!r}, "--bundle", {str(bundle)!r}, "--out", {str(tmp_path / 'out')!r},
             "--quiet"])
assert code == 0, code
assert not any(name == "torch" or name.startswith("torch.") for name, m in sys.modules.items() if m is not None)
print("torch-free ok")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch-free ok" in done.stdout
    assert (tmp_path / "out" / "in_seg.png").is_file()
