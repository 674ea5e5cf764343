"""The device-side TensorRT builder (export/build_trt.py) on CPU: bundle reading, build plans for TensorRT 10
and 11, optimisation profiles, and the calls it makes, against a recording stand-in for the tensorrt module."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_medsam.runtime.manifest import DECODER_IO, GraphFile, GraphVariant, Manifest, intensity_section

BUILDER = Path(__file__).resolve().parents[1] / "export" / "build_trt.py"
DIMS = {"S": 256, "g": 16, "2g": 32, "4g": 64, "D": 128, "C": 32, "M": 11, "K": 3}


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_trt", BUILDER)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_trt"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bt = _load_builder()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle folder whose ONNX files are stand-ins (the builder only hashes them; TensorRT would parse them)."""
    variants = []
    for precision in ("fp32", "fp16", "int8"):
        for graph in ("encoder", "decoder"):
            name = f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx"
            (tmp_path / name).write_bytes(f"{graph} {precision}".encode())
            variants.append(GraphVariant(graph, precision, "onnx", [GraphFile.of(tmp_path, name)]))
    manifest = Manifest(name="tiny", version="1", model={"dims": DIMS, "dynamic": {"objects": {"min": 1, "max": 1024},
                                                                                  "points": {"min": 1, "max": 256}}},
                        modalities={"ct": 0}, preprocess={"size": 256}, intensity=intensity_section(), outputs={},
                        variants=variants)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest.to_dict()))
    return tmp_path


class FakeTensorRT:
    """Records what the builder asks of TensorRT; knows only the API of the given major version."""

    def __init__(self, version: str, io_names: set[str]):
        self.__version__ = version
        self.calls: list[tuple] = []
        major = int(version.split(".")[0])
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0)
        # TensorRT 11 removed the weak-typing flags: touching them must fail as it does there.
        self.BuilderFlag = SimpleNamespace(**({"FP16": "FP16", "INT8": "INT8"} if major < 11 else {}), TF32="TF32")
        fake = self

        class Config:
            builder_optimization_level = 0

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("workspace", size))

            def set_flag(self, flag):
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile", dict(profile.shapes)))

            def create_timing_cache(self, data):
                return data

            def set_timing_cache(self, cache, ignore_mismatch):
                pass

            def get_timing_cache(self):
                return SimpleNamespace(serialize=lambda: b"cache")

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, low, opt, high):
                self.shapes[name] = (low, opt, high)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"plan"

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.calls.append(("parse", Path(path).name))
                return True

        class Engine:
            num_io_tensors = len(io_names)

            def get_tensor_name(self, i):
                return sorted(io_names)[i]

        self.Builder, self.OnnxParser = Builder, Parser
        self.Runtime = lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: Engine())


def _decoder_io() -> set[str]:
    return {n for n, _, _ in DECODER_IO["inputs"]} | {n for n, _, _ in DECODER_IO["outputs"]}


def test_builder_imports_without_tensorrt_and_says_how_to_get_it(bundle, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    assert bt.main([str(bundle)]) == 2
    assert "python3-libnvinfer" in capsys.readouterr().err


def test_plans_follow_the_tensorrt_version(bundle):
    manifest = bt.read_bundle(bundle)
    strong = bt.plan_builds(manifest, ["fp16", "int8"], trt_major=11)
    assert [(p.graph, p.source, p.typing, p.flags) for p in strong] == [
        ("encoder", "encoder.fp16.onnx", "strong", []), ("decoder", "decoder.fp16.onnx", "strong", []),
        ("encoder", "encoder.int8.onnx", "strong", []), ("decoder", "decoder.int8.onnx", "strong", [])]
    weak = bt.plan_builds(manifest, ["fp32", "fp16", "int8"], trt_major=10)
    assert [(p.source, p.flags) for p in weak if p.graph == "decoder"] == [
        ("decoder.onnx", []), ("decoder.onnx", ["FP16"]), ("decoder.int8.onnx", ["INT8", "FP16"])]
    assert {p.typing for p in bt.plan_builds(manifest, ["fp16"], 10, typing="strong")} == {"strong"}


def test_profiles_cover_the_shared_dynamic_dimensions(bundle):
    manifest = bt.read_bundle(bundle)
    assert bt.profile_shapes(manifest, "encoder") == {}
    profile = bt.profile_shapes(manifest, "decoder", objects=(1, 4, 32), points=(1, 4, 16))
    assert profile["point_coords"] == ((1, 1, 2), (4, 4, 2), (32, 16, 2))
    assert profile["point_labels"] == ((1, 1), (4, 4), (32, 16))
    assert profile["mask_input"] == ((1, 1, 64, 64), (4, 1, 64, 64), (32, 1, 64, 64))
    assert set(profile) == {"point_coords", "point_labels", "mask_input", "has_mask_input", "self_prompt_weight"}
    with pytest.raises(bt.BuildError, match="objects range"):
        bt.profile_shapes(manifest, "decoder", objects=(1, 4, 2048))


@pytest.mark.parametrize("version,typing,network_flags,builder_flags", [
    ("10.3.0", "weak", 0, ["INT8", "FP16"]),
    ("10.3.0", "strong", 1, []),
    ("11.4.1", "weak", 0, []),  # TensorRT 11: strongly typed whatever was asked, no removed flag touched
])
def test_build_calls_match_tensorrt_10_and_11(bundle, tmp_path, version, typing, network_flags, builder_flags):
    fake = FakeTensorRT(version, _decoder_io())
    manifest = bt.read_bundle(bundle)
    plan = next(p for p in bt.plan_builds(manifest, ["int8"], bt.trt_major(fake), typing) if p.graph == "decoder")
    engine, cache = tmp_path / "out" / "decoder.int8.plan", tmp_path / "out" / "timing.cache"
    bt.build_engine(fake, plan, bundle, engine, bt.profile_shapes(manifest, "decoder"), cache, io=manifest["io"]["decoder"])
    assert ("network", network_flags) in fake.calls and ("parse", "decoder.int8.onnx") in fake.calls
    assert [c[1] for c in fake.calls if c[0] == "flag"] == builder_flags
    assert engine.read_bytes() == b"plan" and cache.read_bytes() == b"cache"
    assert next(c[1] for c in fake.calls if c[0] == "profile")["point_labels"] == ((1, 1), (4, 4), (32, 16))


def test_engine_with_other_tensors_is_refused(bundle, tmp_path):
    fake = FakeTensorRT("11.4.1", {"embedding", "masks"})
    manifest = bt.read_bundle(bundle)
    plan = bt.plan_builds(manifest, ["fp16"], 11)[1]
    with pytest.raises(bt.BuildError, match="differ from the bundle"):
        bt.build_engine(fake, plan, bundle, tmp_path / "d.plan", {}, tmp_path / "c", io=manifest["io"]["decoder"])


def test_damaged_bundle_is_refused_before_building(bundle):
    (bundle / "decoder.fp16.onnx").write_bytes(b"changed")
    with pytest.raises(bt.BuildError, match=r"decoder\.fp16\.onnx: missing or does not match its sha256"):
        bt.read_bundle(bundle)


def test_build_all_records_device_version_and_settings(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(bt, "device_description", lambda: {"name": "Orin", "compute_capability": "8.7", "host": "h"})
    fake = FakeTensorRT("10.3.0", set())
    monkeypatch.setattr(bt, "_check_engine_io", lambda *args: None)
    record = bt.build_all(fake, bundle, tmp_path / "engines", ["fp16"])
    saved = json.loads((tmp_path / "engines" / "engines.json").read_text())
    assert saved == record and saved["tensorrt"] == "10.3.0" and saved["device"]["name"] == "Orin"
    assert [(e["graph"], e["file"], e["flags"]) for e in saved["engines"]] == [
        ("encoder", "encoder.fp16.plan", ["FP16"]), ("decoder", "decoder.fp16.plan", ["FP16"])]
    assert saved["engines"][1]["profile"]["has_mask_input"] == [[1], [4], [32]]

