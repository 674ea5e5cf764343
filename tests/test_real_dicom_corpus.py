"""Every real DICOM file pydicom and pydicom-data ship, through `edge-medsam predict` with the shipped bundle as one
hospital batch (CI runs it in the torch-free environment too): each
image pydicom can decode is segmented and written; DICOM-SEGs (masks) are pointed to --prompts-from; the files
pydicom cannot decode (truncated, malformed headers, damaged streams) are segmented where the damage does not touch
the pixels, else refused in one line naming the file. The figure this test prints is the README's."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import DATA_ROOT, get_testdata_file
from pydicom.data.data_manager import external_data_sources

from edge_medsam.cli import main
from edge_medsam.io import read_volume
from edge_medsam.runtime.bundle import DEMO_BUNDLE

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def _shipped_files() -> list[Path]:
    """The files on disk of pydicom's test data and of the installed pydicom-data store (listed, never fetched:
    pydicom's own search would try to download what the store lacks)."""
    folders = [Path(DATA_ROOT) / "test_files", *(Path(source.data_path) for source in external_data_sources().values())]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.is_file())


def _classify(path: Path) -> str:
    """What pydicom itself makes of a file: not DICOM, no pixels, a SEG, decodable, or undecodable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            return "not dicom"
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            return "no pixels"
        if str(ds.get("SOPClassUID", "")) == SEG_STORAGE:
            return "seg"
        try:
            ds.pixel_array  # noqa: B018 (decoding is the check)
        except Exception:
            return "undecodable"
    return "decodable"


def test_rt_dose_frames_are_placed_by_their_grid_offsets() -> None:
    volume = read_volume(get_testdata_file("rtdose.dcm"))
    assert volume.shape == (10, 10, 15)
    assert np.allclose(volume.spacing, (10.0, 10.0, 5.0))  # GridFrameOffsetVector steps of 5 mm


def test_every_decodable_real_dicom_image_is_segmented(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _shipped_files()
    kinds = {path: _classify(path) for path in files}
    images = [p for p, kind in kinds.items() if kind in ("decodable", "seg", "undecodable")]
    assert sum(kind == "decodable" for kind in kinds.values()) >= 100  # pydicom's and pydicom-data's images
    main(["predict", *map(str, images), "--bundle", str(DEMO_BUNDLE), "--out", str(tmp_path), "--quiet"])
    stderr = capsys.readouterr().err
    records = {Path(r["input"]): r for r in map(json.loads, (tmp_path / "summary.jsonl").read_text().splitlines())}
    assert set(records) == set(images)
    failed = {p: r["error"] for p, r in records.items() if r["status"] != "ok"}
    of = {kind: [p for p in images if kinds[p] == kind] for kind in ("decodable", "seg", "undecodable")}
    assert not [p for p in of["decodable"] if p in failed], failed
    assert all(p in failed and "DICOM Segmentation" in failed[p] and "--prompts-from" in failed[p] for p in of["seg"])
    assert all(str(p) in line and "\n" not in line for p, line in failed.items())
    for record in records.values():
        if record["status"] == "ok":
            assert Path(record["output"]).is_file()
    assert all(line.startswith("edge-medsam: ") for line in stderr.splitlines() if line)
    rescued = [p.name for p in of["undecodable"] if p not in failed]
    print(f"\nreal DICOM files: {len(files)}; images pydicom decodes: {len(of['decodable'])}, segmented and written: "
          f"{len(of['decodable'])}; DICOM-SEGs pointed to --prompts-from: {len(of['seg'])}; files pydicom cannot "
          f"decode: {len(of['undecodable'])}, of which segmented anyway: {len(rescued)} {rescued}, refused in one line:"
          f" {len(of['undecodable']) - len(rescued)}; without pixels: {sum(k == 'no pixels' for k in kinds.values())};"
          f" not DICOM: {sum(k == 'not dicom' for k in kinds.values())}")
