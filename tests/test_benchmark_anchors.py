"""Anchors go through the same export and quantization as ours, and their accuracy per precision is measured."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nncf")

from edge_medsam.benchmark.accuracy import measure_box_accuracy
from edge_medsam.benchmark.engines import load_graph
from edge_medsam.benchmark.scenarios import Variant
from edge_medsam.benchmark.subjects import anchor_subject, synthetic_probes

TINY_LITEMEDSAM = {"image_size": 64, "embed_dims": (16, 32, 32, 48), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 3),
                   "prompt_dim": 32, "decoder_mlp_dim": 64, "decoder_heads": 4, "iou_hidden_dim": 32}


def test_anchor_is_exported_in_fp16_and_int8_and_scored_per_precision(tmp_path) -> None:
    subject = anchor_subject("litemedsam", tmp_path, overrides=TINY_LITEMEDSAM, precisions=("fp32", "fp16", "int8"),
                             calib_count=3, log=lambda line: None)
    assert set(subject.variants) == {(f, p) for f in ("onnx", "openvino") for p in ("fp32", "fp16", "int8")}
    assert all(path.exists() for pair in subject.variants.values() for path in pair.files)
    assert subject.variants[("onnx", "int8")].note == "NNCF INT8 encoder, FP32 decoder"

    def variant(backend: str, precision: str) -> Variant:
        graphs = [load_graph(subject, g, backend, precision, 1) for g in ("encoder", "decoder")]
        return Variant(subject, backend, precision, 1, *graphs)

    reference = variant("onnxruntime", "fp32")
    others = [reference, variant("openvino", "fp32"), variant("onnxruntime", "fp16"), variant("openvino", "int8")]
    assert "i8" in others[3].encoder.details["computes_in"] or "u8" in others[3].encoder.details["computes_in"]
    probes = synthetic_probes(3, subject.size, seed=5, config=subject.preprocess)
    result = measure_box_accuracy(reference, others, probes)
    rows = {(r["backend"], r["precision"]): r for r in result["variants"]}
    assert rows[("onnxruntime", "fp32")]["agreement_dice"]["box"] == 1.0  # the reference against itself
    assert rows[("onnxruntime", "fp32")]["dice_points_lost"]["box"] == 0.0
    assert rows[("openvino", "fp32")]["agreement_dice"]["box"] > 0.95  # same FP32 graph, other backend
    assert all(0.0 <= r["dice"]["box"] <= 1.0 and np.isfinite(r["dice_points_lost"]["box"]) for r in rows.values())
    # A second call reuses the export (same request, same sources).
    again = anchor_subject("litemedsam", tmp_path, overrides=TINY_LITEMEDSAM, precisions=("fp32", "fp16", "int8"),
                           calib_count=3, log=lambda line: None)
    assert again.variants[("openvino", "int8")].encoder.stat().st_mtime == \
        subject.variants[("openvino", "int8")].encoder.stat().st_mtime
