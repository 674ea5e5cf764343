"""Export to a bundle: contract, FP32 parity, FP16/INT8 variants, accuracy control, manifest integrity, failure."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from edge_medsam.compress import pipeline
from edge_medsam.compress.bundle import staged_bundle
from edge_medsam.compress.graphs import DECODER_INPUTS, DECODER_OUTPUTS, DecoderGraph, EncoderGraph, graph_dims
from edge_medsam.compress.onnx_export import OPSET, check_contract
from edge_medsam.compress.parity import FP32_RTOL, ParityError
from edge_medsam.compress.pipeline import ExportSettings, export_student_bundle
from edge_medsam.compress.probes import make_probe
from edge_medsam.compress.quantize import SENSITIVE_MODULES, ignored_nodes, to_signed_int8
from edge_medsam.compress.runners import onnxruntime_runner, openvino_runner
from edge_medsam.data.synth import generate_sample
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.modalities import get_modality
from edge_medsam.models.student import EdgeStudent, student_preset
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.runtime.decoder_feed import decoder_feed
from edge_medsam.runtime.manifest import read_manifest, verify_bundle

# Op types TensorRT 10's ONNX parser imports (onnx-tensorrt operator matrix, 10.x); the graphs must stay inside.
TRT10_OPS = {
    "Abs", "Add", "ArgMax", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos",
    "DequantizeLinear", "Div", "Einsum", "Equal", "Erf", "Expand", "Gather", "GatherElements", "GatherND", "Gemm",
    "Exp", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "LayerNormalization", "Less", "LessOrEqual",
    "MatMul", "Max", "Min", "Mul",
    "Neg", "Pad", "Pow", "QuantizeLinear", "Range", "Reciprocal", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize",
    "ScatterElements", "ScatterND", "Shape", "Sigmoid", "Sin", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub",
    "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
}
MODALITIES = ("fundus", "ct", "dermoscopy", "xray", "mr", "endoscopy", "microscopy")


def _probes(seed: int, count: int) -> list:
    rng = np.random.default_rng(seed)
    probes = []
    for i in range(count):
        name = MODALITIES[(seed + i) % len(MODALITIES)]
        sample = generate_sample(name, seed * 100 + i, size=128)
        probe = make_probe(f"{name}-{i}", name, get_modality(name).index, sample.pixels, sample.labels,
                           PreprocessConfig(256), rng, sample.hounsfield)
        assert probe is not None
        probes.append(probe)
    return probes


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model runs one image at a time; a second thread only waits for a busy core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def student() -> EdgeStudent:
    torch.manual_seed(0)
    return EdgeStudent(student_preset("tiny")).eval()


@pytest.fixture(scope="module")
def export(tmp_path_factory, student):
    """One bundle with every format and precision; the OpenVINO INT8 decoder is made to fail the Dice budget."""
    out = tmp_path_factory.mktemp("export") / "bundle"
    original = pipeline._BundleBuilder._validation_dice

    def penalised(self, fmt, precisions, validation):
        dice = original(self, fmt, precisions, validation)
        if fmt == "openvino" and precisions["decoder"] == "int8":
            return {k: v - 0.5 for k, v in dice.items()}
        return dice

    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline._BundleBuilder, "_validation_dice", penalised)
        report = export_student_bundle(student, out, _probes(0, 4), _probes(7, 3),
                                       ExportSettings(max_dice_drop=0.2, calib_count=4, eval_count=3),
                                       name="tiny-test", log=lines.append)
    return report, lines


def _files(manifest, graph, precision, fmt):
    return [f.file for f in manifest.variant(graph, precision, fmt).files]


def test_bundle_lists_every_variant_and_verifies(export):
    report, lines = export
    manifest = verify_bundle(report.bundle)
    assert {(v.graph, v.precision, v.format) for v in manifest.variants} == {
        (g, p, f) for g in ("encoder", "decoder") for p in ("fp32", "fp16", "int8") for f in ("onnx", "openvino")}
    assert _files(manifest, "encoder", "fp32", "onnx") == ["encoder.onnx"]
    assert _files(manifest, "decoder", "fp16", "openvino") == ["openvino/decoder.fp16.xml", "openvino/decoder.fp16.bin"]
    assert not list(report.bundle.parent.glob(".bundle.*"))  # no staging folder left behind
    assert any("parity onnx fp32" in line for line in lines)  # progress was shown
    lineage = manifest.lineage
    assert lineage["versions"]["edge_medsam"] and lineage["export_settings"]["max_dice_drop"] == 0.2
    assert manifest.model["dims"] == graph_dims(student_preset("tiny"))
    assert manifest.preprocess["size"] == 256 and manifest.modalities["ct"] == 0


def test_damaged_or_missing_file_is_refused(export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(export[0].bundle, copy)
    data = bytearray((copy / "decoder.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "decoder.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(EdgeMedSAMError, match=r"decoder\.int8\.onnx does not match its sha256"):
        verify_bundle(copy)
    (copy / "openvino" / "encoder.bin").unlink()
    manifest = read_manifest(copy)
    with pytest.raises(EdgeMedSAMError, match=r"encoder\.bin is missing"):
        verify_bundle(copy, manifest, [manifest.variant("encoder", "fp32", "openvino")])


def test_fp32_parity_is_tight_and_recorded(export):
    metrics = export[0].manifest.metrics
    for fmt in ("onnx", "openvino"):
        parity = metrics["parity"][fmt]["fp32"]
        assert max(parity["encoder_max_abs"].values()) < 1e-4
        assert max(parity["decoder_max_abs"].values()) < 1e-4
        assert min(parity["mask_agreement"].values()) > 0.99
        assert parity["auto_modality_agreement"] == 1.0
    assert set(metrics["dice_drop"]["onnx"]) == {"fp16", "int8"}


def test_one_decoder_graph_takes_any_object_and_point_count(export, student):
    bundle = export[0].bundle
    image = torch.from_numpy(_probes(3, 1)[0].image)
    with torch.no_grad():
        outputs = EncoderGraph(student)(image, torch.tensor([4]))
    features = dict(zip(("embedding", "skip8", "skip4", "dense_prompt"), (o.numpy() for o in outputs[:4]), strict=True))
    features["modality_index"] = outputs[7].numpy()
    runners = ((onnxruntime_runner(bundle / "decoder.onnx"), 1e-4),
               (openvino_runner(bundle / "openvino" / "decoder.xml"), 1e-4),
               (onnxruntime_runner(bundle / "decoder.fp16.onnx"), 5e-2))
    for objects, points in ((1, 1), (1, 4), (3, 1), (3, 4)):
        rng = np.random.default_rng(objects * 10 + points)
        labels = rng.integers(-1, 4, (objects, points)).astype(np.float32)
        mask = rng.standard_normal((objects, 1, 64, 64)).astype(np.float32)
        feed = decoder_feed(features, rng.uniform(0, 256, (objects, points, 2)), labels, 0.5, mask_input=mask)
        with torch.no_grad():
            expected = DecoderGraph(student)(*(torch.from_numpy(feed[n]) for n in DECODER_INPUTS))
        for run, tolerance in runners:
            got = run(feed)
            for name, want in zip(DECODER_OUTPUTS, expected, strict=True):
                assert got[name].shape == tuple(want.shape)
                error = np.abs(got[name] - want.numpy()).max()
                assert error < tolerance * max(1.0, float(want.abs().max())), (name, objects, points, error)


def test_auto_modality_is_recognised_inside_the_encoder(export, student):
    run = onnxruntime_runner(export[0].bundle / "encoder.onnx")
    image = _probes(5, 1)[0].image
    auto = run({"image": image, "modality": np.array([-1], np.int64)})
    assert auto["modality_index"][0] == auto["modality_logits"].argmax()
    with torch.no_grad():
        expected = EncoderGraph(student)(torch.from_numpy(image), torch.tensor([-1]))
    assert auto["modality_index"][0] == int(expected[7][0])
    np.testing.assert_allclose(auto["embedding"], expected[0].numpy(), atol=1e-4)
    given = run({"image": image, "modality": np.array([6], np.int64)})
    assert given["modality_index"][0] == 6


def test_every_onnx_graph_keeps_the_contract_and_suits_tensorrt_10(export):
    bundle, manifest = export[0].bundle, export[0].manifest
    dims = manifest.model["dims"]
    for precision in ("fp32", "fp16", "int8"):
        for graph in ("encoder", "decoder"):
            model = onnx.load(str(bundle / _files(manifest, graph, precision, "onnx")[0]))
            check_contract(model, graph, dims)
            assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == OPSET <= 20
            assert {n.op_type for n in model.graph.node} <= TRT10_OPS
            assert not model.graph.initializer or all(not i.external_data for i in model.graph.initializer)
    decoder = onnx.load(str(bundle / "decoder.onnx"))
    coords = next(i for i in decoder.graph.input if i.name == "point_coords")
    assert [d.dim_param or d.dim_value for d in coords.type.tensor_type.shape.dim] == ["objects", "points", 2]


def test_int8_onnx_is_symmetric_signed_qdq(export):
    bundle = export[0].bundle
    for graph in ("encoder", "decoder"):
        model = onnx.load(str(bundle / f"{graph}.int8.onnx"))
        inits = {i.name: i for i in model.graph.initializer}
        qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert len(qdq) > 20
        for node in qdq:
            zero, scale = inits[node.input[2]], numpy_helper.to_array(inits[node.input[1]])
            assert zero.data_type == TensorProto.INT8 and not numpy_helper.to_array(zero).any()
            assert np.isfinite(scale).all() and (scale > 0).all()


def test_int8_and_fp16_dice_drop_is_bounded(export):
    """Mask agreement of INT8 with FP32 is checked on ONNX Runtime only: OpenVINO 2026.4's CPU plugin computes the
    same INT8 IR differently on each compilation (measured on an AMD EPYC with AVX-512: the tiny encoder's embedding
    moved by up to 0.4 of its 3.4 range between two compilations, 0.0 between two runs of one), so the random tiny
    model's borderline box masks agreed 0.52-0.66 from one process to the next."""
    metrics = export[0].manifest.metrics
    for fmt in ("onnx", "openvino"):
        assert max(metrics["dice_drop"][fmt]["fp16"].values()) < 0.01
        assert max(metrics["dice_drop"][fmt]["int8"].values()) < 0.1
    assert min(metrics["parity"]["onnx"]["int8"]["mask_agreement"].values()) > 0.7
    assert min(metrics["parity"]["openvino"]["fp16"]["mask_agreement"].values()) > 0.95


def test_accuracy_control_keeps_a_failing_graph_in_fp32(export):
    manifest = export[0].manifest
    ov = manifest.metrics["quantization"]["openvino"]
    assert ov["decoder"]["chosen"] == "fp32" and "lost more than 0.2 Dice" in ov["decoder"]["reason"]
    assert [t["tier"] for t in ov["decoder"]["trials"]] == ["int8", "int8_mixed", "int8_plain"]
    assert _files(manifest, "decoder", "int8", "openvino") == _files(manifest, "decoder", "fp32", "openvino")
    # The first tier that computes the same on every compilation and holds the budget (on some hosts OpenVINO's
    # CPU plugin computes an INT8 IR differently per compilation: such a tier is refused, not shipped).
    encoder = ov["encoder"]
    assert encoder["chosen"] == encoder["trials"][-1]["tier"] and encoder["trials"][-1]["drop"] <= 0.2
    assert all(t.get("compile_spread", 0) > FP32_RTOL or t.get("drop", 0) > 0.2 for t in encoder["trials"][:-1])
    assert _files(manifest, "encoder", "int8", "openvino") == ["openvino/encoder.int8.xml", "openvino/encoder.int8.bin"]
    onnx_report = manifest.metrics["quantization"]["onnx"]
    assert onnx_report["decoder"]["chosen"] == "int8" and onnx_report["combined"]["drop"] <= 0.2
    assert onnx_report["qdq"]["decoder"]["nonzero_zero_points"] == 0


def test_a_graph_that_computes_differently_per_compilation_is_refused(monkeypatch, tmp_path):
    outputs = iter([{"masks": np.zeros(3, np.float32)}, {"masks": np.full(3, 0.5, np.float32)}])
    monkeypatch.setattr(pipeline, "_runner", lambda fmt, path: lambda feed: next(outputs))
    builder = SimpleNamespace(main=lambda graph, precision, fmt: tmp_path / "decoder.int8.onnx")
    assert pipeline._BundleBuilder._compile_spread(builder, "onnx", "decoder", {}) == 0.5
    reason = pipeline._rejection([{"tier": t, "compile_spread": 0.5} for t in ("int8", "int8_mixed")], 0.2)
    assert "computed differently on each compilation" in reason and "0.5" in reason
    mixed = pipeline._rejection([{"tier": "int8", "compile_spread": 0.5}, {"tier": "int8_mixed", "drop": 0.3}], 0.2)
    assert "lost more than 0.2 Dice" in mixed and "(1 of 2 tiers)" in mixed


def test_mixed_precision_tier_ignores_the_sensitive_modules(export):
    model = onnx.load(str(export[0].bundle / "decoder.onnx"))
    names = ignored_nodes(model, "decoder", "int8_mixed")
    assert names and ignored_nodes(model, "decoder", "int8") == []
    scopes = {p.value for n in model.graph.node if n.name in names for p in n.metadata_props if p.key == "namespace"}
    assert all(any(m in scope for m in SENSITIVE_MODULES["decoder"]) for scope in scopes)


def test_unsigned_quantizers_become_signed_with_the_same_range():
    zero = numpy_helper.from_array(np.array(0, np.uint8), "zp")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
         onnx.helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [zero, scale])
    model = to_signed_int8(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits["zp"].dtype == np.int8 and inits["zp"] == 0
    assert inits["s"] * 127 == pytest.approx(0.1 * 255)
    onnx.checker.check_model(model, full_check=True)


def test_export_fails_loudly_and_writes_nothing_when_fp32_parity_breaks(export, student, tmp_path, monkeypatch):
    source = export[0].bundle

    def copy_fp32(_student, root, _opset):  # reuse the exported graphs instead of exporting again
        return {g: Path(shutil.copy(source / f"{g}.onnx", root / f"{g}.onnx")) for g in ("encoder", "decoder")}

    def broken(path, threads=0):
        run = onnxruntime_runner(path, threads)

        def wrong(feed):
            out = run(feed)
            return {k: v + 0.01 if k == "masks" else v for k, v in out.items()}

        return wrong

    monkeypatch.setattr(pipeline, "export_student", copy_fp32)
    monkeypatch.setattr(pipeline, "onnxruntime_runner", broken)
    target = tmp_path / "bundle"
    with pytest.raises(ParityError, match=r"masks max \|error\|"):
        export_student_bundle(student, target, _probes(0, 1), _probes(7, 1),
                              ExportSettings(formats=("onnx",), precision=("fp32",)), log=lambda _: None)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_settings_and_targets_are_checked(tmp_path):
    with pytest.raises(InputError, match="format"):
        ExportSettings(formats=("tflite",))
    settings = ExportSettings.from_dict({"formats": "onnx", "precision": ["int8"], "calib_count": 8})
    assert settings.formats == ("onnx",) and settings.precision == ("fp32", "int8")
    with pytest.raises(InputError, match="between 0 and 1"):
        ExportSettings(max_dice_drop=2.0)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a bundle folder"), staged_bundle(tmp_path / "notes"):
        pass
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_manifest_json_is_plain_and_complete(export):
    data = json.loads((export[0].bundle / "manifest.json").read_text())
    assert data["format"] == "edge-medsam-bundle" and data["io"]["decoder"]["inputs"][5][0] == "point_coords"
    assert data["outputs"]["masks"]["threshold"] == 0.0 and data["intensity"]["ct_windows"]
    assert data["metrics"]["reference"]["dice"].keys() == {"box", "self_prompt"}
    assert data["metrics"]["data"]["held_out_images"] == 3


def test_tensorrt_builds_engines_from_the_bundle(export, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed here (it runs on the GPU/Jetson device)")
    spec = importlib.util.spec_from_file_location("build_trt", Path(__file__).resolve().parents[1] / "export" /
                                                  "build_trt.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules["build_trt"] = builder
    spec.loader.exec_module(builder)
    try:
        record = builder.build_all(trt, export[0].bundle, tmp_path / "engines", ["fp32", "fp16", "int8"])
    except TypeError as err:  # pybind11 factory failure: the bindings load but no CUDA device is usable
        pytest.skip(f"TensorRT {trt.__version__} cannot create a builder without a GPU ({err})")
    assert len(record["engines"]) == 6
    assert all((tmp_path / "engines" / e["file"]).stat().st_size > 0 for e in record["engines"])


def test_cli_reports_a_missing_model_in_one_line(tmp_path, capsys):
    from edge_medsam.cli import main

    code = main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b"),
                 "--calib", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "none.pt" in err and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_cli_exports_a_model_file_from_a_dataset_folder(tmp_path, student, capsys):
    from edge_medsam.cli import main
    from edge_medsam.data.synth import write_corpus
    from edge_medsam.models.files import save_model
    from edge_medsam.runtime.manifest import sha256_file

    write_corpus(tmp_path / "corpus", per_modality=2, size=128, seed=1, modalities=["fundus", "xray"], volumes=0)
    model = save_model(student, tmp_path / "student.pt", extra={"recipe": "test"})
    code = main(["export", "--checkpoint", str(model), "--out", str(tmp_path / "bundle"), "--calib",
                 str(tmp_path / "corpus"), "--formats", "onnx", "--precision", "fp32", "--calib-count", "1",
                 "--eval-count", "1", "--zip"])
    out = capsys.readouterr().out
    assert code == 0 and "Dice (PyTorch FP32, held-out)" in out and "encoder.onnx" in out
    manifest = verify_bundle(tmp_path / "bundle")
    assert manifest.name == "student" and manifest.lineage["model_sha256"] == sha256_file(model)
    assert manifest.lineage["recipe"] == "test" and (tmp_path / "bundle.zip").stat().st_size > 0


def test_a_stride_8_student_exports_and_refines_on_its_own_mask_grid(tmp_path):
    """A student with a 32 x 32 embedding at 256 input (the lite layout, narrow here) gives 128 x 128 logits; the
    runtime takes that grid from the manifest, so a click with the previous mask decodes (it once expected 64)."""
    from edge_medsam.models.student import StudentConfig
    from edge_medsam.runtime import Predictor

    torch.manual_seed(0)
    config = StudentConfig(embed_dim=64, decoder_heads=2, decoder_mlp_dim=128, embedding_stride=8)
    out = tmp_path / "bundle"
    export_student_bundle(EdgeStudent(config).eval(), out, _probes(0, 2), _probes(7, 2),
                          ExportSettings(formats=("onnx",), precision=("fp32",), calib_count=2, eval_count=2),
                          name="stride8-test", log=lambda line: None)
    predictor = Predictor.from_bundle(out, backend="onnxruntime")
    assert predictor.bundle.low_res_size == 4 * config.grid == 128
    image = generate_sample("ct", 3, size=128).pixels
    predictor.set_image(image, modality="ct")
    first = predictor.predict(boxes=[[20, 20, 90, 100]])
    assert first.low_res_logits.shape[-2:] == (128, 128)
    again = predictor.predict(points=[[50, 60]], labels=[1], mask=first.low_res_logits)
    assert again.masks.shape[-2:] == image.shape[:2]
