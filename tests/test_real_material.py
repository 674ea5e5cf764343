"""`edge-medsam data real`: the pyradiomics cases as NIfTI volumes with real masks, unlabelled package images."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

nrrd = pytest.importorskip("nrrd")

from edge_medsam.cli import main  # noqa: E402
from edge_medsam.data import real  # noqa: E402
from edge_medsam.data.layouts import load_sample, open_dataset  # noqa: E402
from edge_medsam.errors import InputError  # noqa: E402
from edge_medsam.io import read_image, read_volume, slice_volume  # noqa: E402

PREFIX = "pyradiomics-3.0.1/data"
LPS = {"space": "left-posterior-superior", "space directions": np.diag([0.8, 0.8, 5.0]),
       "space origin": np.array([-100.0, 80.0, -60.0]), "encoding": "gzip"}
# case → (slices, labelled slices) of the fake sdist
FAKE = {"brain1": (5, (1, 2)), "brain2": (4, (2,)), "breast1": (3, (0, 1)), "lung1": (6, (3,)), "lung2": (4, (1, 2, 3))}
REAL_VOXELS = {"brain1": 4137, "brain2": 453, "breast1": 143, "lung1": 837, "lung2": 24644}
REAL_SLICES = {"brain1": 7, "brain2": 3, "breast1": 3, "lung1": 3, "lung2": 11}


def _nrrd_bytes(data: np.ndarray, header: dict) -> bytes:
    buffer = io.BytesIO()
    nrrd.write(buffer, data, dict(header), index_order="F")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, payload: bytes = b"", **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    for key, value in fields.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(payload) if payload else None)


def _fake_volumes(case: str) -> tuple[np.ndarray, np.ndarray]:
    depth, labelled = FAKE[case]
    rng = np.random.default_rng(len(case) + depth)
    low = -1024 if case.startswith("lung") else 0
    image = rng.integers(low, 1500, (12, 10, depth)).astype(np.int16)
    labels = np.zeros(image.shape, np.int32 if case.startswith("brain") else np.int16)
    for k in labelled:
        labels[3:6, 2:5, k] = 1
    return image, labels


def _sdist(path: Path, *, extra: list | None = None, skip: str | None = None,
           label_shape: tuple[int, int, int] | None = None) -> Path:
    """A pyradiomics-like sdist with the five cases as small gzip NRRD volumes (and whatever ``extra`` adds)."""
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "pyradiomics-3.0.1/setup.py", b"# not run\n")
        _add(archive, PREFIX, type=tarfile.DIRTYPE)
        for case in FAKE:
            image, labels = _fake_volumes(case)
            if label_shape is not None:
                labels = np.zeros(label_shape, labels.dtype)
            for kind, data in (("image", image), ("label", labels)):
                if f"{case}_{kind}" != skip:
                    _add(archive, f"{PREFIX}/{case}_{kind}.nrrd", _nrrd_bytes(data, LPS))
        for name, payload, fields in extra or []:
            _add(archive, name, payload, **fields)
    return path


@pytest.fixture()
def sdist(tmp_path: Path) -> Path:
    return _sdist(tmp_path / "pyradiomics-3.0.1.tar.gz")


def test_fake_sdist_becomes_volumes_that_open_dataset_slices(tmp_path, sdist):
    out = tmp_path / "real"
    manifest_path = real.write_real(out, sdist, only="labelled", progress=False)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == "edge-medsam-real" and manifest["version"] == 1 and manifest["samples"] == []
    assert [s["package"] for s in manifest["sources"]] == ["pyradiomics"]
    assert manifest["sources"][0]["verified"] is False  # not the published sdist's sha256
    assert manifest["unlabelled"] == [] and manifest["skipped"] == []
    entries = {e["case"]: e for e in manifest["volumes"]}
    assert list(entries) == list(FAKE)
    lung = entries["lung1"]
    assert lung["modality"] == "ct" and lung["intensity"] == {"units": "HU", "offset": 0} and lung["masks"] == "real"
    assert lung["source"] == {"package": "pyradiomics", "version": "3.0.1", "licence": "BSD-3-Clause",
                              "file": f"{PREFIX}/lung1_image.nrrd", "labels_file": f"{PREFIX}/lung1_label.nrrd"}
    assert entries["brain1"]["modality"] == "mr" and "intensity" not in entries["brain1"]
    assert entries["lung2"]["objects"] == [{"label": 1, "name": "tumour", "voxels": 27, "slices": 3}]

    dataset = open_dataset(out, include_volumes=True)
    assert len(dataset) == sum(depth for depth, _ in FAKE.values()) and dataset.counts() == {"ct": 10, "mr": 12}
    lesions = open_dataset(out, include_volumes=True, foreground_only=True)
    assert {(s.case, s.index) for s in lesions} == {(c, k) for c, (_, ks) in FAKE.items() for k in ks}
    sample = next(s for s in lesions if s.case == "lung1")
    image, labels, modality = load_sample(sample)
    original, _ = _fake_volumes("lung1")
    expected = slice_volume(read_volume(out / "volumes" / "lung1.nii.gz"), 2, 3).pixels
    assert modality.name == "ct" and image.hounsfield and np.array_equal(image.pixels, expected)
    assert dict(sample.objects) == {1: "lesion"} and labels.sum() == 9
    written = read_volume(out / "volumes" / "lung1.nii.gz")
    assert written.voxels.dtype == np.int16 and np.array_equal(written.voxels, original)
    assert np.allclose(written.affine[:3, :3], np.diag([-0.8, -0.8, 5.0]))  # LPS → RAS
    with pytest.raises(InputError, match="no usable samples"):
        open_dataset(out)  # without include_volumes the labelled material is not 2D samples


def test_rerun_is_a_noop_and_a_damaged_folder_is_rewritten(tmp_path, sdist):
    out = tmp_path / "real"
    manifest_path = real.write_real(out, sdist, only="labelled", progress=False)
    stamp = manifest_path.stat().st_mtime_ns
    assert real.write_real(out, sdist, only="labelled", progress=False) == manifest_path
    assert manifest_path.stat().st_mtime_ns == stamp
    (out / "volumes" / "brain2_labels.nii.gz").unlink()
    real.write_real(out, sdist, only="labelled", progress=False)
    assert (out / "volumes" / "brain2_labels.nii.gz").is_file()


def test_missing_sdist_names_the_package_and_the_fetch_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_MEDSAM_MATERIAL", str(tmp_path / "cache"))
    with pytest.raises(InputError) as info:
        real.write_real(tmp_path / "out", only="labelled")
    text = str(info.value)
    assert "pyradiomics" in text and "scripts/fetch_real_material.sh" in text and "\n" not in text
    assert str(tmp_path / "cache" / "pyradiomics-3.0.1.tar.gz") in text
    assert main(["data", "real", "--out", str(tmp_path / "out"), "--only", "labelled"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fetch_real_material.sh" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_material_cache_is_found_by_default(tmp_path, monkeypatch, sdist):
    monkeypatch.setenv("EDGE_MEDSAM_MATERIAL", str(sdist.parent))
    assert real.find_pyradiomics() == sdist


@pytest.mark.parametrize("extra", [
    ("pyradiomics-3.0.1/data/../../evil.nrrd", b"x", {}),
    ("/tmp/evil.nrrd", b"x", {}),
    ("pyradiomics-3.0.1/data/link", b"", {"type": tarfile.SYMTYPE, "linkname": "../../../etc/passwd"}),
    ("pyradiomics-3.0.1/data/abs", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
])
def test_path_traversal_members_are_refused(tmp_path, extra):
    tarball = _sdist(tmp_path / "bad.tar.gz", extra=[extra])
    with pytest.raises(InputError, match="unsafe member"):
        real.write_real(tmp_path / "out", tarball, only="labelled", progress=False)
    assert not (tmp_path / "evil.nrrd").exists() and not (tmp_path / "out" / "manifest.json").exists()


def test_a_case_member_that_is_a_link_is_refused(tmp_path):
    tarball = _sdist(tmp_path / "bad.tar.gz", skip="lung1_label", extra=[
        (f"{PREFIX}/lung1_label.nrrd", b"", {"type": tarfile.SYMTYPE, "linkname": "lung1_image.nrrd"})])
    with pytest.raises(InputError, match="not a regular file"):
        real.write_real(tmp_path / "out", tarball, only="labelled", progress=False)


def test_damaged_incomplete_and_off_grid_archives(tmp_path, sdist):
    whole = sdist.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="cannot read the archive"):
        real.write_real(tmp_path / "o1", tmp_path / "cut.tar.gz", only="labelled", progress=False)
    lacking = _sdist(tmp_path / "lacking.tar.gz", skip="breast1_label")
    with pytest.raises(InputError, match=r"breast1_label\.nrrd"):
        real.write_real(tmp_path / "o2", lacking, only="labelled", progress=False)
    off_grid = _sdist(tmp_path / "grid.tar.gz", label_shape=(12, 10, 2))
    with pytest.raises(InputError, match="not on the grid"):
        real.write_real(tmp_path / "o3", off_grid, only="labelled", progress=False)


def test_a_foreign_manifest_is_not_overwritten(tmp_path, sdist):
    (tmp_path / "manifest.json").write_text('{"format": "edge-medsam-corpus", "samples": []}')
    with pytest.raises(InputError, match="another dataset"):
        real.write_real(tmp_path, sdist, only="labelled", progress=False)


def test_unlabelled_images_are_read_written_and_skipped_with_reasons(tmp_path, monkeypatch):
    pytest.importorskip("pydicom")
    pytest.importorskip("skimage")
    monkeypatch.setattr(real, "DICOM_FILES", (
        real.Unlabelled("pydicom", "CT_small.dcm", "ct"),
        real.Unlabelled("pydicom", "MR_small.dcm", "mr"),
        real.Unlabelled("pydicom", "no_such_file.dcm", "ct"),
        real.Unlabelled("pydicom", "liver_1frame.dcm", "ct"),  # a DICOM SEG: the readers refuse it
        real.Unlabelled("pydicom", "examples_ybr_color.dcm", "ultrasound"),  # 30 frames
    ))
    monkeypatch.setattr(real, "SKIMAGE_FILES", (real.Unlabelled("scikit-image", "microaneurysms.png", "fundus"),
                                                real.Unlabelled("scikit-image", "missing.png", "fundus")))
    out = tmp_path / "real"
    manifest = json.loads(real.write_real(out, only="unlabelled", frames=2, progress=False).read_text())
    entries = {e["id"]: e for e in manifest["unlabelled"]}
    assert set(entries) == {"pydicom-CT_small", "pydicom-MR_small", "skimage-microaneurysms",
                            "pydicom-examples_ybr_color--z_0000", "pydicom-examples_ybr_color--z_0029"}
    ct = entries["pydicom-CT_small"]
    assert ct["modality"] == "ct" and ct["intensity"] == {"units": "HU", "offset": -1024}
    assert ct["image"] == "images/ct/pydicom-CT_small.png" and ct["source"]["package"] == "pydicom"
    assert entries["pydicom-examples_ybr_color--z_0029"]["case"] == "pydicom-examples_ybr_color"
    assert {s["file"] for s in manifest["skipped"]} == {"no_such_file.dcm", "liver_1frame.dcm", "missing.png"}
    assert "Segmentation" in next(s["reason"] for s in manifest["skipped"] if s["file"] == "liver_1frame.dcm")
    assert manifest["volumes"] == [] and {s["package"] for s in manifest["sources"]} == {
        "pydicom", "pydicom-data", "scikit-image"}

    from pydicom.data import get_testdata_file

    samples = {s.id: s for s in real.unlabelled_samples(out)}
    image, labels, modality = load_sample(samples["pydicom-CT_small"])
    original = read_image(get_testdata_file("CT_small.dcm", download=False))
    assert labels is None and modality.name == "ct" and image.hounsfield
    assert np.array_equal(image.pixels, np.round(original.pixels))
    fundus, _, _ = load_sample(samples["skimage-microaneurysms"])
    assert fundus.pixels.shape == (102, 102) and fundus.pixels.dtype == np.uint8


def test_a_larger_copy_elsewhere_is_taken_instead(tmp_path, monkeypatch):
    pytest.importorskip("data_store", reason="pydicom-data is not installed")
    monkeypatch.setattr(real, "DICOM_FILES", (
        real.Unlabelled("pydicom", "examples_rgb_color.dcm", "ultrasound", copy_of="US1_UNCR.dcm"),
        real.Unlabelled("pydicom-data", "US1_UNCR.dcm", "ultrasound"),
    ))
    monkeypatch.setattr(real, "SKIMAGE_FILES", ())
    manifest = json.loads(real.write_real(tmp_path, only="unlabelled", progress=False).read_text())
    assert [e["id"] for e in manifest["unlabelled"]] == ["pydicom-data-US1_UNCR"]
    assert manifest["skipped"][0]["reason"].startswith("a smaller copy of US1_UNCR.dcm")


def _cached_sdist() -> Path | None:
    path = real.material_dir() / real.PYRADIOMICS_SDIST
    return path if path.is_file() else None


@pytest.mark.skipif(_cached_sdist() is None, reason="pyradiomics sdist not in the material cache "
                    "(bash scripts/fetch_real_material.sh)")
def test_the_real_pyradiomics_cases(tmp_path):
    out = tmp_path / "real"
    manifest = json.loads(real.write_real(out, only="labelled", progress=False).read_text())
    assert manifest["sources"][0]["verified"] is True
    entries = {e["case"]: e for e in manifest["volumes"]}
    assert {c: e["objects"][0]["voxels"] for c, e in entries.items()} == REAL_VOXELS
    assert {c: e["objects"][0]["slices"] for c, e in entries.items()} == REAL_SLICES
    assert entries["lung1"]["shape"] == [512, 512, 48] and entries["brain1"]["spacing"][2] == pytest.approx(6.5)
    labels = read_volume(out / "volumes" / "brain2_labels.nii.gz")
    assert int((labels.voxels > 0).sum()) == 453
    lesions = open_dataset(out, include_volumes=True, foreground_only=True)
    assert {c: sum(s.case == c for s in lesions) for c in REAL_SLICES} == REAL_SLICES
    image, mask, _ = load_sample(next(s for s in lesions if s.case == "lung2"))
    assert image.hounsfield and image.pixels.min() >= -1024 and mask.any()
    assert os.path.getsize(out / "volumes" / "lung2.nii.gz") > 1_000_000


def test_cli_prints_the_cases_with_their_slices(tmp_path, sdist, capsys):
    out = tmp_path / "real"
    assert main(["data", "real", "--out", str(out), "--pyradiomics", str(sdist), "--only", "labelled"]) == 0
    text = capsys.readouterr().out
    assert f"real material: {out / 'manifest.json'}" in text
    assert "lung2    ct  12x10x4       4 slices,  3 with tumour (27 voxels)" in text
    assert main(["data", "layout", str(out), "--volumes"]) == 0
    assert "22 samples from 5 cases" in capsys.readouterr().out
