"""The demo bundle shipped in the package: it loads with every hash checked, says what it was distilled from and
trained on, stays within the package budget, segments fresh synthetic images (never seen in training) above a Dice
floor, and scores on the real labelled scans what its manifest (and the model card) says."""

from __future__ import annotations

import numpy as np
import pytest

from edge_medsam.data.layouts import open_dataset
from edge_medsam.data.real import write_real
from edge_medsam.data.synth import write_corpus
from edge_medsam.evaluation import evaluate
from edge_medsam.evaluation.real_scans import evaluate_real_scans
from edge_medsam.models.reference.litemedsam_weights import LITEMEDSAM
from edge_medsam.runtime import Predictor, open_bundle
from edge_medsam.runtime.bundle import DEMO_BUNDLE
from edge_medsam.runtime.segmenter import RuntimeSegmenter

MAX_BYTES = 32_000_000  # FP32 lite student: LiteMedSAM's 4.1 M-parameter decoder is most of it


def test_demo_bundle_is_shipped_small_and_verified():
    assert DEMO_BUNDLE.is_dir(), "build it with scripts/ship_demo_bundle.py after the quickstart"
    size = sum(path.stat().st_size for path in DEMO_BUNDLE.rglob("*") if path.is_file())
    assert size <= MAX_BYTES
    bundle = open_bundle(DEMO_BUNDLE)  # verifies every sha256 and the format version
    lineage = bundle.manifest.lineage
    assert "synthetic corpus" in lineage["trained_on"] and "real unlabelled images" in lineage["trained_on"]
    assert LITEMEDSAM.sha256 in lineage["teacher"]
    assert "NOT for clinical use" in lineage["intended_use"]


@pytest.mark.slow
def test_demo_bundle_segments_fresh_corpus_images(tmp_path):
    # Another seed than the quickstart's corpus: images the shipped model has never seen.
    root = write_corpus(tmp_path / "fresh", per_modality=4, size=256, seed=4242, volumes=0).parent
    samples = list(open_dataset(root).samples)
    report = evaluate(RuntimeSegmenter(Predictor.from_bundle(DEMO_BUNDLE, backend="onnxruntime")), samples,
                      prompts=("box", "auto", "refine"), max_objects=4, progress=False)
    overall = report.overall()
    assert overall["auto"]["dice"] >= 0.75  # measured 0.810 when shipped (session 7, recipes/demo.yaml, lite)
    assert overall["box"]["dice"] >= 0.7  # measured 0.787
    recognition = report.recognition_summary()
    assert recognition["accuracy"] >= 0.9  # measured 1.0
    assert np.isfinite([overall[m]["nsd"] for m in ("box", "auto", "refine")]).all()
    # Clicks correcting a wrong self-prompted mask (Dice < 0.9) help: measured 0.736 -> 0.770 on 29 images, 25
    # of them improved.
    correction = report.correction_summary()
    assert correction["images"] >= 8
    assert correction["refined_dice"] >= correction["auto_dice"] + 0.02
    assert correction["improved"] >= 0.7 * correction["images"]


@pytest.mark.slow
def test_demo_bundle_scores_on_real_scans_what_its_manifest_says(tmp_path):
    """The shipped ONNX FP32 graphs are the run's student (export parity): on the real labelled scans they give the
    student's recorded box Dice (0.748 tight, 0.717 jittered), above LiteMedSAM's and below the ellipse baseline."""
    write_real(tmp_path / "real", only="labelled")
    samples = open_dataset(tmp_path / "real", include_volumes=True, foreground_only=True).samples
    segmenter = RuntimeSegmenter(Predictor.from_bundle(DEMO_BUNDLE, backend="onnxruntime"), name="shipped")
    measured = evaluate_real_scans([segmenter], samples).summary()
    recorded = open_bundle(DEMO_BUNDLE).manifest.lineage["real_scans_box_dice"]
    for kind in ("tight", "jittered"):
        assert measured["shipped"][kind]["all"]["dice"] == pytest.approx(recorded["student"][kind], abs=0.01)
        assert measured["ellipse_in_box"][kind]["all"]["dice"] == pytest.approx(recorded["ellipse_in_box"][kind],
                                                                                abs=1e-3)
