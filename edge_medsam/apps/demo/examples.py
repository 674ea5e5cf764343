"""Synthetic example inputs for the page, drawn by the package's own corpus generator (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from edge_medsam.data.synth import generate_sample, generate_volume
from edge_medsam.io import Volume

PICTURES = (("dermoscopy", 3), ("xray", 1), ("ultrasound", 2))


def _picture(folder: Path, modality: str, seed: int) -> Path:
    path = folder / f"{modality}_{seed}.png"
    Image.fromarray(np.asarray(generate_sample(modality, seed, size=256).pixels)).save(path)
    return path


def _ct_series(folder: Path) -> Path:
    """A small synthetic abdominal CT as a zipped DICOM series (Hounsfield units, one file per slice)."""
    from edge_medsam.io import write_dicom_series

    synth = generate_volume(0, size=128, slices=24)
    path = folder / "ct_series.zip"
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        files = write_dicom_series(scratch, Volume(synth.hounsfield, synth.affine, hounsfield=True), "CT",
                                   series_description="edge-medsam synthetic abdomen")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(file, f"ct/{file.name}")
    return path


def write_examples(folder: Path) -> list[Path]:
    """Write the example files into ``folder``: pictures, and a CT DICOM series where pydicom is installed."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_picture(folder, modality, seed) for modality, seed in PICTURES]
    if importlib.util.find_spec("pydicom") is not None:
        paths.insert(0, _ct_series(folder))
    return paths
