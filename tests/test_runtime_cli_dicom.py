"""`edge-medsam predict` on DICOM a hospital sends: sources without a Frame of Reference, odd headers, library
warnings. Runs the shipped demo bundle (torch-free)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import SecondaryCaptureImageStorage
from test_io_dicom import image_dataset, save
from test_io_dicom_header import malformed

from edge_medsam.cli import main
from edge_medsam.io import read_dicom_seg, read_image, read_volume
from edge_medsam.runtime.bundle import DEMO_BUNDLE

MULTI_FRAME_SC = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte Secondary Capture
RNG = np.random.default_rng(7)
pytestmark = pytest.mark.skipif(not DEMO_BUNDLE.is_dir(), reason="the demo bundle is not shipped in this checkout")


def capture(frames: int) -> pydicom.Dataset:
    """A secondary capture (no Frame of Reference) of ``frames`` frames, as a scanned film or screenshot."""
    pixels = RNG.integers(0, 255, (frames, 64, 72) if frames > 1 else (64, 72), dtype=np.uint8)
    extra = {"NumberOfFrames": frames} if frames > 1 else {}
    ds = image_dataset(pixels, modality="OT", sop_class=MULTI_FRAME_SC if frames > 1 else SecondaryCaptureImageStorage,
                       ConversionType="WSD", **extra)
    assert "FrameOfReferenceUID" not in ds
    return ds


def predict(capsys: pytest.CaptureFixture[str], out: Path, *argv: str) -> tuple[int, list[dict], list[str]]:
    code = main(["predict", *argv, "--out", str(out), "--quiet", "--backend", "onnxruntime", "--threads", "1"])
    err = capsys.readouterr().err
    records = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    return code, records, err.splitlines()


def test_single_frame_sources_without_frame_of_reference_get_a_dicom_seg(tmp_path, capsys):
    screenshot = save(capture(1), tmp_path / "capture.dcm")
    ultrasound = get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm")  # US, JPEG lossless, no Frame of Reference
    code, records, err = predict(capsys, tmp_path / "out", str(screenshot), ultrasound, "--format", "dicom-seg")
    assert code == 0 and err == [] and [r["format"] for r in records] == ["dicom-seg", "dicom-seg"]
    for source, record in zip((screenshot, ultrasound), records, strict=True):
        seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(record["output"]))
        assert "FrameOfReferenceUID" not in seg and seg.SegmentationType == "BINARY"
        image = read_image(source)
        labels, names = read_dicom_seg(record["output"], image)
        assert labels.shape == image.shape and names[1] == "object 1"
        assert int((labels == 1).sum()) == record["objects"][0]["pixels"]


def test_multi_frame_source_without_frame_of_reference_is_written_as_nifti_with_the_reason(tmp_path, capsys):
    path = save(capture(3), tmp_path / "cine.dcm")
    code, (record,), err = predict(capsys, tmp_path / "out", str(path))
    assert code == 0 and record["status"] == "ok" and record["format"] == "nifti"
    (line,) = err
    assert line.startswith(f"edge-medsam: warning: {path}: ") and "no Frame of Reference" in line
    assert "wrote the mask as NIfTI instead" in line and record["output"] in line
    labels = read_volume(record["output"])
    assert labels.shape == read_volume(path).shape == (72, 64, 3)


def test_library_warnings_go_to_the_log_and_stderr_has_one_line_per_problem(tmp_path):
    odd = malformed(save(image_dataset(RNG.integers(0, 4000, (40, 48), dtype=np.uint16), SeriesNumber=1),
                         tmp_path / "odd.dcm"), "SeriesNumber", b"AB")
    padded = get_testdata_file("MR_small_padded.dcm")  # pydicom warns about the excess padding after the pixels
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(odd.read_bytes()[:-500])
    out = tmp_path / "out"
    # A process of its own: pytest would otherwise catch the warnings before they reach stderr.
    run = subprocess.run([sys.executable, "-c", "import sys; from edge_medsam.cli import main; sys.exit(main())",
                          "predict", str(odd), padded, str(broken), "--out", str(out), "--quiet",
                          "--backend", "onnxruntime", "--threads", "1"], capture_output=True, text=True, timeout=300)
    records = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert run.returncode == 1 and [r["status"] for r in records] == ["ok", "ok", "error"]
    assert run.stderr.splitlines() == [f"edge-medsam: error: {records[2]['error']}",
                                       "edge-medsam: 1 of 3 inputs failed (see above)"]
    assert records[0]["warnings"] == [
        f"{odd}: the header element SeriesNumber (0020,0011) holds 'AB', not an integer; read without it"]
    (remark,) = records[1]["warnings"]  # pydicom logs it and warns it: one line
    assert "excess padding" in remark
    log = (out / "predict.log").read_text()
    assert "SeriesNumber (0020,0011)" in log and f"{padded}: {remark}" in log and f"ERROR {records[2]['error']}" in log
