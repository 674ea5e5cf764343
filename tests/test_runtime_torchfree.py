"""The hospital install: `pip install edge-medsam[runtime]` (no torch) + the shipped demo bundle.

CI runs this file a second time in a virtual environment without torch (`.ci/run`); there it also proves that
nothing on the runtime path imports torch. It needs no test bundle built with torch: it uses the shipped one.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_medsam.cli import main
from edge_medsam.data.synth import generate_volume, write_corpus
from edge_medsam.io import Volume, read_dicom_seg, read_mask, read_volume, write_dicom_series, write_nifti
from edge_medsam.runtime import Predictor
from edge_medsam.runtime.bundle import DEMO_BUNDLE

TORCH_INSTALLED = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("torchfree")
    manifest = write_corpus(root / "corpus", per_modality=1, size=128, seed=7, modalities=["dermoscopy"], volumes=0)
    picture = next(p for p in (manifest.parent / "images").rglob("*.png"))
    synth = generate_volume(3, size=64, slices=10)
    write_nifti(root / "ct.nii.gz", synth.hounsfield, synth.affine)
    write_dicom_series(root / "series", Volume(synth.hounsfield.astype(np.float32), synth.affine, hounsfield=True))
    return {"png": picture, "nifti": root / "ct.nii.gz", "series": root / "series"}


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    code = main(["predict", *argv, "--backend", "onnxruntime", "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_predict_picture_volume_and_series_with_the_shipped_bundle(inputs, tmp_path, capsys):
    (picture,) = _predict(capsys, str(inputs["png"]), "--out", str(tmp_path / "png"))
    assert picture["status"] == "ok" and picture["modality"] == "dermoscopy"
    assert read_mask(tmp_path / "png" / f"{inputs['png'].stem}_seg.png").any()

    (volume,) = _predict(capsys, str(inputs["nifti"]), "--out", str(tmp_path / "nii"), "--format", "nifti",
                         "--modality", "ct", "--box3d", "12", "12", "3", "52", "52", "7")
    assert volume["status"] == "ok" and volume["kind"] == "3d"
    labels = read_volume(next((tmp_path / "nii").glob("*.nii.gz")))
    assert labels.voxels.shape == read_volume(inputs["nifti"]).voxels.shape and labels.voxels.any()

    (series,) = _predict(capsys, str(inputs["series"]), "--out", str(tmp_path / "seg"), "--format", "dicom-seg",
                         "--modality", "ct", "--box3d", "12", "12", "3", "52", "52", "7")
    assert series["status"] == "ok"
    labels, names = read_dicom_seg(next((tmp_path / "seg").glob("*.dcm")), read_volume(inputs["series"]))
    assert labels.any() and names


def test_k_prompts_cost_one_encoder_run(inputs):
    predictor = Predictor.from_bundle(DEMO_BUNDLE, backend="onnxruntime")
    predictor.set_image(inputs["png"])
    for box in ([10, 10, 60, 60], [20, 30, 100, 90], [0, 0, 127, 127]):
        assert predictor.predict(boxes=np.array([box], np.float32)).masks.shape[-2:] == (128, 128)
    assert (predictor.encoder_runs, predictor.decoder_runs) == (1, 3)


@pytest.mark.skipif(TORCH_INSTALLED, reason="meaningful only in the torch-free environment CI builds")
def test_nothing_on_the_runtime_path_imported_torch():
    assert "torch" not in sys.modules
