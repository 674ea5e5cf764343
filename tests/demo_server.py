"""Helpers for the demo's tests: a launched demo on this machine, and inputs drawn by the synthetic corpus."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from edge_medsam.apps.demo import DemoApp, DemoEngine, demo_app
from edge_medsam.data.synth import generate_sample, generate_volume
from edge_medsam.io import Volume, write_dicom_series


@contextmanager
def running_demo(bundle: Path, *, examples: bool = False) -> Iterator[DemoApp]:
    """The demo on ``bundle`` (ONNX Runtime, one thread), served on 127.0.0.1 at a free port until the block ends."""
    engine = DemoEngine.open(bundle, backend="onnxruntime", threads=1)
    with demo_app(engine, examples=examples) as app:
        app.launch(prevent_thread_lock=True, quiet=True)
        try:
            yield app
        finally:
            app.blocks.close()


def corpus_picture(folder: Path, modality: str = "dermoscopy", seed: int = 3, size: int = 160,
                   name: str = "picture.png") -> tuple[Path, np.ndarray]:
    """A synthetic corpus picture saved as PNG, and its label map."""
    sample = generate_sample(modality, seed, size=size)
    path = folder / name
    Image.fromarray(np.asarray(sample.pixels)).save(path)
    return path, sample.labels


def ct_series(folder: Path, size: int = 48, slices: int = 8) -> tuple[list[Path], Volume]:
    """A synthetic CT written as a DICOM series (one file per slice) and the volume written."""
    synth = generate_volume(0, size=size, slices=slices)
    volume = Volume(synth.hounsfield, synth.affine, hounsfield=True)
    return write_dicom_series(folder / "series", volume, "CT"), volume


def zipped(files: list[Path], path: Path) -> Path:
    """``files`` in a zip archive at ``path``."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in files:
            archive.write(file, f"series/{file.name}")
    return path
