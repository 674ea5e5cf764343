"""Damaged or hostile model files: bundles are refused with the reason, and nothing in a file runs code.

Bundles are private copies of the cached test bundle (tests/runtime_bundle.py) damaged in tmp_path: a changed
byte in any file, a missing file, a manifest of another format version, graph files that are not the graphs the
manifest declares. Checkpoints and .npz cases carry a pickled call that would write a marker file if anything
unpickled it; every loader must refuse them and the marker must stay absent.
"""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import MarkerPayload, marker_for
from runtime_bundle import cached_bundle, copy_bundle, write_manifest

import edge_medsam
from edge_medsam.engine.checkpoint import load_checkpoint
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io import read_laptop_npz
from edge_medsam.models.files import load_model
from edge_medsam.models.sam.checkpoint import read_state_dict
from edge_medsam.runtime import Predictor, open_bundle
from edge_medsam.runtime.manifest import MANIFEST, sha256_file

pytestmark = pytest.mark.timeout(120, func_only=True)  # the shared test bundle may be built in setup first
BACKEND_OF = {".onnx": "onnxruntime", ".xml": "openvino", ".bin": "openvino"}
GRAPH_FILES = ["encoder.onnx", "decoder.onnx", "openvino/encoder.xml", "openvino/encoder.bin", "openvino/decoder.xml",
               "openvino/decoder.bin"]


@pytest.fixture(scope="module", autouse=True)
def built_bundle() -> Path:
    return cached_bundle()


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def _load(bundle: Path, backend: str) -> Predictor:
    return Predictor.from_bundle(bundle, backend=backend, threads=1)


def _rehash(bundle: Path) -> None:
    """Make the manifest's sizes and sha256 match the files as they are now (a tamperer who knows the format)."""
    data = _manifest(bundle)
    for variant in data["graphs"]:
        for entry in variant["files"]:
            path = bundle / entry["file"]
            entry["sha256"], entry["bytes"] = sha256_file(path), path.stat().st_size
    write_manifest(bundle, data)


# --- damaged bundles ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRAPH_FILES)
def test_a_changed_byte_in_any_graph_file_is_refused_naming_it(name: str, tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit of one byte
    (bundle / name).write_bytes(bytes(data))
    with pytest.raises(EdgeMedSAMError, match="does not match its sha256") as err:
        _load(bundle, BACKEND_OF[Path(name).suffix])
    assert name.split("/")[-1] in str(err.value) and err.value.fix


@pytest.mark.parametrize("name", GRAPH_FILES)
def test_a_missing_graph_file_is_refused_naming_it(name: str, tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    (bundle / name).unlink()
    with pytest.raises(EdgeMedSAMError, match=f"graph file {name} is missing"):
        _load(bundle, BACKEND_OF[Path(name).suffix])


def test_a_missing_or_damaged_manifest_is_refused(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    text = (bundle / MANIFEST).read_text()
    (bundle / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(EdgeMedSAMError, match=r"manifest\.json is not valid JSON"):
        open_bundle(bundle)
    data = json.loads(text)
    data["graphs"][0]["files"][0]["sha256"] = "0" * 64  # a changed byte in the manifest's record of a graph
    write_manifest(bundle, data)
    with pytest.raises(EdgeMedSAMError, match="does not match its sha256"):
        _load(bundle, "onnxruntime")
    (bundle / MANIFEST).unlink()
    with pytest.raises(EdgeMedSAMError, match=r"no manifest\.json"):
        open_bundle(bundle)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_a_manifest_of_another_format_version_is_refused(version, tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    data = _manifest(bundle)
    data["format_version"] = version
    write_manifest(bundle, data)
    with pytest.raises(EdgeMedSAMError, match=f"bundle format version {version} is not 1") as err:
        open_bundle(bundle)
    assert "upgrade" in err.value.fix


def test_a_manifest_pointing_outside_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    (tmp_path / "elsewhere.onnx").write_bytes((bundle / "encoder.onnx").read_bytes())
    data = _manifest(bundle)
    data["graphs"][0]["files"][0]["file"] = "../elsewhere.onnx"
    write_manifest(bundle, data)
    with pytest.raises(EdgeMedSAMError, match="outside the bundle"):
        _load(bundle, "onnxruntime")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_swapped_graph_files_with_matching_hashes_are_refused(backend: str, tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    folder = bundle if backend == "onnxruntime" else bundle / "openvino"
    suffixes = [".onnx"] if backend == "onnxruntime" else [".xml", ".bin"]
    for suffix in suffixes:
        encoder, decoder = folder / f"encoder{suffix}", folder / f"decoder{suffix}"
        encoder.rename(folder / "swap")
        decoder.rename(encoder)
        (folder / "swap").rename(decoder)
    _rehash(bundle)
    with pytest.raises(EdgeMedSAMError, match="does not match the bundle's declared graph I/O") as err:
        _load(bundle, backend)
    assert "encoder" in str(err.value) and "re-export" in err.value.fix


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_graph_of_another_input_size_than_declared_is_refused(backend: str, tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    data = _manifest(bundle)
    declared = data["model"]["dims"]
    declared.update({"S": 128, "g": 8, "2g": 16, "4g": 32})  # the graphs take 256: the manifest lies consistently
    data["preprocess"]["size"] = 128
    write_manifest(bundle, data)
    with pytest.raises(EdgeMedSAMError, match=r"'image' is float32 \[1, 3, 256, 256\], the manifest declares") as err:
        _load(bundle, backend)
    assert "encoder" in str(err.value)


def test_a_changed_byte_in_a_zipped_bundle_names_the_zip(tmp_path: Path) -> None:
    source = cached_bundle()
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # stored, so the flipped byte lands in a graph, not in deflate data
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(source).as_posix())
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("decoder.onnx")
    data[info.header_offset + 30 + len(info.filename) + info.file_size // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(EdgeMedSAMError) as err:  # the zip's CRC or the graph's sha256, whichever notices first
        Predictor.from_bundle(archive, backend="onnxruntime", cache_dir=tmp_path / "cache")
    assert str(archive) in str(err.value) and err.value.fix


# --- hostile pickles ---------------------------------------------------------------------------------------------
def _hostile_checkpoint(folder: Path) -> Path:
    path = folder / "hostile.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "spec": {"kind": "student"}, "extra": MarkerPayload(marker_for(folder))},
               path)
    return path


def test_the_hostile_checkpoint_would_run_code_if_unpickled(tmp_path: Path) -> None:
    """The control: the payload is live, so the refusals below are real."""
    path = _hostile_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker_for(tmp_path).read_text() == "code ran"


@pytest.mark.parametrize("loader", [load_checkpoint, load_model, read_state_dict], ids=lambda f: f.__name__)
def test_checkpoints_carrying_code_are_refused_without_running_it(loader, tmp_path: Path) -> None:
    path = _hostile_checkpoint(tmp_path)
    with pytest.raises(EdgeMedSAMError) as err:
        loader(path)
    assert str(path) in str(err.value) and err.value.fix
    assert not marker_for(tmp_path).exists()


def test_npz_carrying_code_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "3DBox_CT_0001.npz"
    with open(path, "wb") as handle:
        np.savez(handle, imgs=np.zeros((4, 8, 8), np.uint8), gts=np.array([MarkerPayload(marker_for(tmp_path))]))
    with pytest.raises(EdgeMedSAMError, match="holds Python objects"):
        read_laptop_npz(path)
    assert not marker_for(tmp_path).exists()


def _unsafe_calls(path: Path) -> list[str]:
    """Calls that run code from data: eval/exec, pickle/marshal loads, and loaders told to unpickle."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        builtin = isinstance(func, ast.Name) and name in ("eval", "exec")
        if builtin or owner in ("pickle", "marshal", "dill") or name == "Unpickler":
            found.append(f"{owner}.{name}" if owner else name)
        for keyword in node.keywords:
            value = getattr(keyword.value, "value", None)
            if (keyword.arg, value) in (("allow_pickle", True), ("weights_only", False)):
                found.append(f"{keyword.arg}={value}")
    return found


def test_nothing_in_the_package_unpickles_untrusted_files() -> None:
    """Loaders use weights_only=True / allow_pickle=False; the one exception is the explicit sanitise tool."""
    root = Path(edge_medsam.__file__).parent
    found = {path.relative_to(root).as_posix(): calls for path in sorted(root.rglob("*.py"))
             if (calls := _unsafe_calls(path))}
    # sanitise_checkpoint re-saves a checkpoint the user says they trust; nothing calls it on its own. The
    # benchmark's cold-start child reads the feeds its own parent pickled a moment before into its work folder. The
    # challenge's .npz cases hold pickled boxes and clicks: a numbers-only unpickler builds them (its refusal of
    # anything else is tested in test_interactive3d_protocol.py).
    assert found == {"models/sam/checkpoint.py": ["weights_only=False"],
                     "benchmark/coldstart.py": ["pickle.load", "pickle.dump"],
                     "io/challenge_npz.py": ["pickle.UnpicklingError"]}
    runtime = [p for p in (root / "runtime").rglob("*.py")]
    assert not [p.name for p in runtime if "torch" in _imports(p) or "pickle" in _imports(p)]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
