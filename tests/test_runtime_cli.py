"""`edge-medsam predict` on pictures, NIfTI, DICOM series and MedSAM-on-Laptop cases; bad inputs in a batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_bundle import cached_bundle

from edge_medsam.cli import main
from edge_medsam.data.synth import generate_volume
from edge_medsam.io import (
    Volume,
    read_dicom_seg,
    read_laptop_npz,
    read_mask,
    read_volume,
    write_dicom_series,
    write_nifti,
)
from edge_medsam.runtime import Predictor
from edge_medsam.runtime.bundle import DEMO_BUNDLE


@pytest.fixture(scope="module")
def bundle() -> Path:
    return cached_bundle()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One input of every kind."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(root / "photo.png")
    synth = generate_volume(1, size=48, slices=8)
    write_nifti(root / "ct.nii.gz", synth.hounsfield, synth.affine)
    write_dicom_series(root / "series", Volume(synth.hounsfield.astype(np.float32), synth.affine, hounsfield=True))
    np.savez_compressed(root / "2DBox_Dermoscopy_0001.npz", imgs=rng.integers(0, 255, (60, 70, 3), dtype=np.uint8),
                        boxes=np.array([[5, 5, 30, 40], [35, 10, 65, 50]]))
    np.savez_compressed(root / "3DBox_CT_0001.npz", imgs=rng.integers(0, 255, (6, 40, 50), dtype=np.uint8),
                        boxes=np.array([[10, 5, 1, 30, 25, 4]]), spacing=np.array([1.0, 1.0, 2.5]))
    return {"png": root / "photo.png", "nifti": root / "ct.nii.gz", "series": root / "series",
            "npz2d": root / "2DBox_Dermoscopy_0001.npz", "npz3d": root / "3DBox_CT_0001.npz"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict], str]:
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_png_with_boxes_and_points(bundle: Path, data: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, records, _ = run(capsys, str(data["png"]), "--bundle", str(bundle), "--out", str(tmp_path),
                           "--box", "10", "10", "50", "60", "--point", "30", "30", "1", "--point", "5", "70", "0",
                           "--backend", "openvino", "--threads", "1")
    assert code == 0
    (record,) = records
    assert record["status"] == "ok" and record["kind"] == "2d" and record["shape"] == [80, 100]
    assert record["backend"].startswith("openvino") and len(record["objects"]) == 1
    assert {"read", "normalise", "preprocess", "encoder", "decoder", "postprocess", "write", "total"} <= set(
        record["latency_ms"])
    assert record["modality_source"] == "model" and 0 <= record["modality_confidence"] <= 1
    mask = read_mask(tmp_path / "photo_seg.png")
    assert mask.shape == (80, 100) and set(np.unique(mask)) <= {0, 1}
    assert json.loads((tmp_path / "summary.jsonl").read_text().splitlines()[0]) == record


def test_clicks_correcting_the_self_prompted_mask(bundle: Path, data: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, records, _ = run(capsys, str(data["png"]), "--bundle", str(bundle), "--out", str(tmp_path / "c"),
                           "--point", "30", "30", "1", "--point", "5", "70", "0", "--correct-auto",
                           "--backend", "onnxruntime", "--threads", "1")
    assert code == 0 and records[0]["prompt"] == "corrected auto" and len(records[0]["objects"]) == 1
    predictor = Predictor.from_bundle(bundle, backend="onnxruntime", threads=1)
    predictor.set_image(data["png"])
    automatic = predictor.predict()
    expected = predictor.predict(points=[[30, 30], [5, 70]], labels=[1, 0], mask=automatic.low_res_logits[0],
                                 auto=True)
    np.testing.assert_array_equal(read_mask(tmp_path / "c" / "photo_seg.png") > 0, expected.masks[0])
    for extra, message in ((["--box", "1", "1", "20", "20"], "--correct-auto"), ([], "--correct-auto")):
        points = ["--point", "30", "30", "1"] if extra else []
        code, _, err = run(capsys, str(data["png"]), "--bundle", str(bundle), "--out", str(tmp_path / "e"),
                           "--correct-auto", *points, *extra)
        assert code == 1 and message in err and "give --point" in err
    code, _, err = run(capsys, str(data["nifti"]), "--bundle", str(bundle), "--out", str(tmp_path / "v"),
                       "--correct-auto", "--point", "10", "10", "3", "1")
    assert code == 1 and "works on 2D images" in err


def test_nifti_with_a_3d_box(bundle: Path, data: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code, (record,), _ = run(capsys, str(data["nifti"]), "--bundle", str(bundle), "--out", str(tmp_path),
                             "--box3d", "10", "10", "2", "40", "40", "6", "--modality", "ct", "--window", "abdomen")
    assert code == 0 and record["kind"] == "3d" and record["format"] == "nifti"
    assert record["modality"] == "ct" and record["slices"] == 8
    assert record["encoder_runs"] == record["cache"]["misses"] <= 5
    source = read_volume(data["nifti"])
    labels = read_volume(tmp_path / "ct_seg.nii.gz")
    np.testing.assert_allclose(labels.affine, source.affine)
    assert labels.shape == source.shape and labels.voxels[..., :2].max() == 0 and labels.voxels[..., 7:].max() == 0


def test_dicom_series_gives_a_dicom_seg(bundle: Path, data: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, (record,), _ = run(capsys, str(data["series"]), "--bundle", str(bundle), "--out", str(tmp_path),
                             "--point", "24", "20", "4", "1")
    assert code == 0 and record["format"] == "dicom-seg"
    assert record["modality"] == "ct" and record["modality_source"] == "file"
    assert record["objects"][0]["prompt"] == "points"
    source = read_volume(data["series"])
    labels, names = read_dicom_seg(Path(record["output"]), source)
    assert labels.shape == source.shape and names.get(1) == "object 1"


def test_laptop_cases_keep_the_challenge_format(bundle: Path, data: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, records, _ = run(capsys, str(data["npz2d"]), str(data["npz3d"]), "--bundle", str(bundle),
                           "--out", str(tmp_path), "--quiet")
    assert code == 0 and records == []
    records = [json.loads(line) for line in (tmp_path / "summary.jsonl").read_text().splitlines()]
    assert [r["format"] for r in records] == ["npz", "npz"]
    assert len(records[0]["objects"]) == 2 and records[0]["modality"] == "dermoscopy"
    assert records[1]["objects"][0]["prompt"] == "box3d" and records[1]["modality_source"] == "file"
    segs2d = np.load(tmp_path / "2DBox_Dermoscopy_0001.npz")["segs"]
    segs3d = np.load(tmp_path / "3DBox_CT_0001.npz")["segs"]
    assert segs2d.shape == (60, 70) and set(np.unique(segs2d)) <= {0, 1, 2}
    assert segs3d.shape == read_laptop_npz(data["npz3d"]).imgs.shape
    assert segs3d[0].max() == 0 and segs3d[5].max() == 0  # outside the box's slices 1..4


def test_bad_inputs_do_not_stop_the_batch(bundle: Path, data: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    out = tmp_path / "out"
    code, records, err = run(capsys, str(broken), str(tmp_path / "missing.png"), str(data["png"]), str(notes),
                             str(data["nifti"]), "--bundle", str(bundle), "--out", str(out), "--format", "png")
    assert code == 1
    assert [r["status"] for r in records] == ["error", "error", "ok", "error", "error"]
    errors = [line for line in err.splitlines() if line.startswith("edge-medsam: error:")]
    assert len(errors) == 4 and all("\n" not in e for e in errors)
    assert str(broken) in errors[0] and "missing.png" in errors[1] and str(notes) in errors[2]
    assert "a volume cannot be written as one PNG" in errors[3] and "fix:" in errors[3]
    assert "4 of 5 inputs failed" in err
    assert (out / "photo_seg.png").is_file()


def test_folder_of_images_and_prompt_errors(bundle: Path, data: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(data["png"].read_bytes())
    code, records, err = run(capsys, str(folder), "--bundle", str(bundle), "--out", str(tmp_path / "o"),
                             "--box", "0", "0", "500", "10")
    assert code == 1 and [r["input"] for r in records] == [str(folder / "a.png"), str(folder / "b.png")]
    assert "outside the 100x80 image" in err and str(folder / "a.png") in err
    code, records, err = run(capsys, str(data["png"]), "--bundle", str(bundle), "--out", str(tmp_path / "o"),
                             "--point", "1", "2")
    assert code == 1 and "is not x y label" in err


def test_missing_bundle_says_how_to_fix_it(data: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if not DEMO_BUNDLE.exists():
        code = main(["predict", str(data["png"]), "--out", str(tmp_path)])
        assert code == 2 and "no --bundle given" in capsys.readouterr().err
    code = main(["predict", str(data["png"]), "--out", str(tmp_path), "--bundle", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2 and "the bundle does not exist" in err and "edge-medsam export" in err
