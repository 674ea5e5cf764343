"""The models a run compares, each as a graph pair per (format, precision) plus what feeds and reads them.

Three sources, one export path (torch's dynamo exporter to ONNX, OpenVINO IR converted from that ONNX):
- a bundle folder made by ``edge-medsam export`` (``bundle_subject``);
- a student configuration (preset, input size) or a student model file, exported into a bundle here with
  ``edge_medsam.compress.export_student_bundle`` (FP32 / FP16 / INT8, ONNX + OpenVINO) (``student_subject``);
- an anchor from ``edge_medsam.models.reference`` (random weights: latency does not depend on their values),
  exported with ``compress.reference_export.export_reference_onnx`` and converted to OpenVINO IR, FP32, and
  quantized by the export's own tools as a user choosing that model would (``anchor_subject``): FP16 graphs
  (``compress.fp16``, IR with FP16 weights) and an NNCF INT8 encoder (QDQ ONNX and OpenVINO IR, calibrated on
  synthetic images in the anchor's own preprocessing) beside its FP32 decoder — the encoder is nearly all of an
  anchor's cost, and SAM's prompt decoder has no calibration set of its own here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

import edge_medsam
from edge_medsam.benchmark.prompts import ContractPrompter, ExamplePrompter
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.runtime.manifest import AUTO_MODALITY, read_manifest, sha256_file, verify_bundle
from edge_medsam.versions import EXPORT_LIBRARIES, installed_versions

OURS, ANCHOR = "ours", "anchor"
FORMATS = ("onnx", "openvino")
# The sources an export depends on (inside edge_medsam): a change there means a new export.
STUDENT_SOURCES = ("models/student", "models/prompt_maps.py", "compress", "runtime/manifest.py", "preprocess.py",
                   "modalities.py")
ANCHOR_SOURCES = ("models/reference", "models/sam", "models/teachers/base.py", "models/teachers/sam.py",
                  "models/teachers/profiles.py", "models/prompt_maps.py", "compress")


@dataclass
class GraphPair:
    """The encoder and decoder files of one (format, precision), and every file they need (for size on disk)."""

    encoder: Path
    decoder: Path
    files: list[Path]
    note: str = ""

    @property
    def bytes(self) -> int:
        """Size on disk of both graphs."""
        return sum(p.stat().st_size for p in dict.fromkeys(self.files))


@dataclass
class Subject:
    """One model of the comparison: its graphs, how to feed them, and (lazily) its PyTorch modules."""

    name: str
    family: str  # OURS or ANCHOR
    preprocess: PreprocessConfig
    variants: dict[tuple[str, str], GraphPair]  # (format, precision) → graphs
    encoder_inputs: Callable[[np.ndarray], dict[str, np.ndarray]]  # model input [B, 3, S, S] → encoder feed
    prompter: ContractPrompter | ExamplePrompter
    torch_graphs: Callable[[], tuple[Any, Any]] | None = None  # → (encoder module, decoder module), FP32
    torch_note: str = ""
    bundle: Path | None = None  # our bundle (the runtime's cold start and TensorRT engines use it)
    trained: bool = False  # whether the weights were trained (Dice against ground truth means something)
    prompted_weight: float = 1.0  # our decoder's self-prompt weight for prompted objects (from the manifest)
    info: dict[str, Any] = field(default_factory=dict)
    _torch: tuple[Any, Any] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        """Native input side."""
        return self.preprocess.size

    @property
    def reference_pair(self) -> GraphPair:
        """The FP32 ONNX graphs (MACs, input names, dynamic dimensions)."""
        return self.variants[("onnx", "fp32")]

    def modules(self) -> tuple[Any, Any]:
        """The PyTorch (encoder, decoder) modules, built on first use."""
        if self.torch_graphs is None:
            raise EdgeMedSAMError(f"{self.name} has no PyTorch modules", fix="benchmark it with ONNX Runtime or OpenVINO")
        if self._torch is None:
            self._torch = self.torch_graphs()
        return self._torch


def graph_inputs(path: Path) -> list[tuple[str, list[int | str]]]:
    """(name, shape) of an ONNX graph's inputs; symbolic dimensions come back as their names."""
    model = onnx.load(str(path), load_external_data=False)
    return [(v.name, [d.dim_param if d.HasField("dim_param") else d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in model.graph.input]


def graph_outputs(path: Path) -> list[str]:
    """Names of an ONNX graph's outputs, in order."""
    return [v.name for v in onnx.load(str(path), load_external_data=False).graph.output]


def graph_output_shapes(path: Path) -> dict[str, tuple[int | str, ...]]:
    """Output name → shape of an ONNX graph (symbolic dimensions as their names)."""
    return {v.name: tuple(d.dim_param if d.HasField("dim_param") else d.dim_value
                          for d in v.type.tensor_type.shape.dim)
            for v in onnx.load(str(path), load_external_data=False).graph.output}


def zero_outputs(path: Path) -> dict[str, np.ndarray]:
    """Zero arrays shaped and typed like a graph's (static) outputs: a stand-in where only shapes matter."""
    outputs = onnx.load(str(path), load_external_data=False).graph.output
    return {v.name: np.zeros([d.dim_value for d in v.type.tensor_type.shape.dim],
                             onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)) for v in outputs}


# --- exports are reused from the work folder while nothing they depend on has changed ----------------------------
def export_key(request: dict[str, Any], sources: tuple[str, ...]) -> str:
    """Digest of an export: the request, the export libraries' versions, and the Python sources under
    ``sources`` (paths inside the edge_medsam package) that build and export the model."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode())
    for name, found in installed_versions(EXPORT_LIBRARIES).items():
        digest.update(f"{name}={found};".encode())
    package = Path(edge_medsam.__file__).parent
    for source in sources:
        path = package / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:20]


def _key_file(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.export-key")


def already_exported(folder: Path, key: str) -> bool:
    """Whether ``folder`` holds a finished export made with ``key``."""
    marker = _key_file(folder)
    return folder.is_dir() and marker.is_file() and marker.read_text().strip() == key


def mark_exported(folder: Path, key: str) -> None:
    """Record that ``folder`` holds a finished export made with ``key``."""
    _key_file(folder).write_text(key + "\n")


def graph_parameters(pair: GraphPair) -> int:
    """Weights of both graphs: the elements of their ONNX initializers (constants folded in by the export too)."""
    total = 0
    for path in (pair.encoder, pair.decoder):
        for tensor in onnx.load(str(path), load_external_data=False).graph.initializer:
            total += int(np.prod(tensor.dims))
    return total


def batch_is_dynamic(path: Path) -> bool:
    """Whether the encoder's image input has a symbolic batch dimension."""
    return any(isinstance(shape[0], str) for _, shape in graph_inputs(path) if len(shape) == 4)


# --- our students ----------------------------------------------------------------------------------------------
def _student_modules(student: Any) -> tuple[Any, Any]:
    from edge_medsam.compress.graphs import DecoderGraph, EncoderGraph

    return EncoderGraph(student).eval(), DecoderGraph(student).eval()


def bundle_subject(path: str | Path, student: Any = None, name: str | None = None, trained: bool | None = None,
                   info: dict[str, Any] | None = None) -> Subject:
    """A subject from a bundle folder; ``student`` is its PyTorch model when known (else: same architecture,
    random weights, which is what latency needs)."""
    root = Path(path)
    manifest = verify_bundle(root, read_manifest(root))
    preprocess = PreprocessConfig.from_dict(manifest.preprocess)
    by_key: dict[tuple[str, str], dict[str, list[Path]]] = {}
    digests: dict[tuple[str, str, str], str] = {}
    for variant in manifest.variants:
        by_key.setdefault((variant.format, variant.precision), {})[variant.graph] = [root / f.file for f in variant.files]
        digests[(variant.format, variant.precision, variant.graph)] = variant.files[0].sha256
    variants = {}
    for (fmt, precision), graphs in sorted(by_key.items()):
        if set(graphs) != {"encoder", "decoder"}:
            continue
        kept = [g for g in ("encoder", "decoder") if precision != "fp32"
                and digests.get((fmt, precision, g)) == digests.get((fmt, "fp32", g))]
        note = f"{' and '.join(kept)} kept in FP32 by the export" if kept else ""
        variants[(fmt, precision)] = GraphPair(graphs["encoder"][0], graphs["decoder"][0],
                                               graphs["encoder"] + graphs["decoder"], note)
    if ("onnx", "fp32") not in variants:
        raise EdgeMedSAMError("the bundle has no FP32 ONNX graphs to count and compare against", path=root,
                              fix="export with --formats onnx (FP32 is always made)")

    def modules() -> tuple[Any, Any]:
        from edge_medsam.models.student import EdgeStudent, StudentConfig

        model = student if student is not None else EdgeStudent(StudentConfig.from_dict(manifest.model["config"]))
        return _student_modules(model.eval())

    def encoder_inputs(image: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": image, "modality": np.full(image.shape[0], AUTO_MODALITY, np.int64)}

    config = manifest.model.get("config", {})
    note = "" if student is not None else "same architecture as the bundle, random weights (bundles ship no torch weights)"
    return Subject(
        name=name or f"{manifest.name}@{preprocess.size}", family=OURS, preprocess=preprocess, variants=variants,
        encoder_inputs=encoder_inputs, prompter=ContractPrompter(),
        torch_graphs=modules if manifest.model.get("kind") == "student" else None, torch_note=note, bundle=root,
        # `edge-medsam export` records the trained model file it exported; test and benchmark exports do not.
        trained=bool(trained) if trained is not None else "model_sha256" in manifest.lineage,
        prompted_weight=manifest.prompted_self_prompt_weight,
        info={"source": "bundle", "bundle": str(root), "manifest_name": manifest.name, "version": manifest.version,
              "trunk": config.get("trunk"), "bundle_bytes": sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
              **(info or {})})


def synthetic_probes(count: int, size: int, seed: int, config: PreprocessConfig | None = None) -> list[Any]:
    """``count`` probes (image, prompts, ground truth) from the synthetic corpus, modalities taking turns, in
    ``config``'s preprocessing (default: the students' at ``size``)."""
    from edge_medsam.compress.probes import make_probe
    from edge_medsam.data.synth import SYNTH_MODALITIES, generate_sample
    from edge_medsam.modalities import get_modality

    config = config or PreprocessConfig(size=size)
    rng = np.random.default_rng(seed)
    names = sorted(SYNTH_MODALITIES)
    probes: list[Any] = []
    index = 0
    while len(probes) < count:
        name = names[index % len(names)]
        sample = generate_sample(name, seed * 100_003 + index, size=max(size, 128))
        probe = make_probe(f"{name}-{seed}-{index}", name, get_modality(name).index, sample.pixels, sample.labels,
                           config, rng, sample.hounsfield)
        if probe is not None:
            probes.append(probe)
        index += 1
    return probes


def student_subject(out: Path, preset: str | None = None, model_file: Path | None = None, size: int | None = None,
                    precisions: tuple[str, ...] = ("fp32", "fp16", "int8"), calib_count: int = 16,
                    eval_count: int = 8, seed: int = 0, log: Callable[[str], None] = print) -> Subject:
    """Export a student (a preset with random weights, or a trained model file) into a bundle at ``out``."""
    import torch

    from edge_medsam.compress import ExportSettings, export_student_bundle
    from edge_medsam.models.files import load_model
    from edge_medsam.models.student import EdgeStudent, StudentConfig, student_preset

    if model_file is not None:
        student = load_model(model_file)
        if not isinstance(student, EdgeStudent):
            raise EdgeMedSAMError(f"{type(student).__name__} is not an edge student", path=model_file,
                                  fix="give a student model file (edge-medsam distill writes student.pt)")
        label = Path(model_file).stem
    else:
        config = student_preset(preset or "tiny")
        if size is not None:
            config = StudentConfig.from_dict({**config.to_dict(), "image_size": size})
        torch.manual_seed(seed)
        student = EdgeStudent(config)
        label = f"student-{preset or 'tiny'}"
    student = student.eval()
    image_size = student.config.image_size
    name = f"{label}@{image_size}"
    key = export_key({"kind": "student", "label": label, "config": student.config.to_dict(), "seed": seed,
                      "model_file": sha256_file(model_file) if model_file else None, "precisions": precisions,
                      "calib": calib_count, "eval": eval_count}, STUDENT_SOURCES)
    info = {"source": "model file" if model_file else "preset", "preset": preset,
            "model_file": str(model_file) if model_file else None,
            "params": sum(p.numel() for p in student.parameters())}
    if already_exported(out, key):
        log(f"reusing the export in {out}")
    else:
        calib = synthetic_probes(calib_count, image_size, seed)
        held_out = synthetic_probes(eval_count, image_size, seed + 1)
        settings = ExportSettings(formats=FORMATS, precision=precisions, calib_count=calib_count,
                                  eval_count=eval_count)
        report = export_student_bundle(student, out, calib, held_out, settings, name=label, log=log)
        mark_exported(out, key)
        info["export_seconds"] = round(sum(report.timings.values()), 1)
    return bundle_subject(out, student=student, name=name, trained=model_file is not None, info=info)


# --- anchors ---------------------------------------------------------------------------------------------------
def _numpy_feed(names: list[str], example: tuple[Any, ...]) -> dict[str, np.ndarray]:
    """Example input tensors (in graph-input order) as numpy arrays by graph-input name."""
    if len(example) != len(names):
        raise EdgeMedSAMError(f"the example has {len(example)} inputs, the exported graph {len(names)} ({names})",
                              fix="export the reference graphs with one graph input per example input")
    return {n: np.ascontiguousarray(v.detach().cpu().numpy()) for n, v in zip(names, example, strict=True)}


def _anchor_precision_graphs(out: Path, fp32: dict[str, Path], precisions: tuple[str, ...],
                             calibration: list[dict[str, np.ndarray]]) -> None:
    """Write the anchor's FP16 and INT8 graphs beside its FP32 ones (names as ``_anchor_pairs`` reads them)."""
    from edge_medsam.compress import openvino_ir
    from edge_medsam.compress.fp16 import convert_fp16
    from edge_medsam.compress.quantize import quantize_onnx, quantize_openvino

    if "fp16" in precisions:
        for graph, path in fp32.items():
            convert_fp16(path, out / f"{graph}_fp16.onnx")
            openvino_ir.save_ir(openvino_ir.read_onnx(path), out / "openvino" / f"{graph}_fp16.xml", fp16=True)
    if "int8" in precisions:
        onnx.save(quantize_onnx(onnx.load(str(fp32["encoder"])), calibration, []), str(out / "encoder_int8.onnx"))
        ir = quantize_openvino(openvino_ir.read_onnx(fp32["encoder"]), calibration, [])
        openvino_ir.save_ir(ir, out / "openvino" / "encoder_int8.xml")


def _anchor_pairs(out: Path, precisions: tuple[str, ...]) -> dict[tuple[str, str], GraphPair]:
    """Every graph pair of an exported anchor: FP32, and the FP16 / INT8 ones asked for."""
    def pair(fmt: str, encoder: str, decoder: str, note: str = "") -> GraphPair:
        folder, suffix = (out / "openvino", ".xml") if fmt == "openvino" else (out, ".onnx")
        paths = [folder / f"{encoder}{suffix}", folder / f"{decoder}{suffix}"]
        files = paths + ([p.with_suffix(".bin") for p in paths] if fmt == "openvino" else [])
        return GraphPair(paths[0], paths[1], files, note)

    found = {(fmt, "fp32"): pair(fmt, "encoder", "decoder") for fmt in FORMATS}
    if "fp16" in precisions:
        found |= {(fmt, "fp16"): pair(fmt, "encoder_fp16", "decoder_fp16") for fmt in FORMATS}
    if "int8" in precisions:
        found |= {(fmt, "int8"): pair(fmt, "encoder_int8", "decoder", "NNCF INT8 encoder, FP32 decoder")
                  for fmt in FORMATS}
    return found


def anchor_subject(name: str, out: Path, overrides: dict[str, Any] | None = None,
                   precisions: tuple[str, ...] = ("fp32",), calib_count: int = 16, seed: int = 0,
                   log: Callable[[str], None] = print) -> Subject:
    """Build a reference model, export its two graphs to ONNX and OpenVINO IR in FP32 and the other ``precisions``.
    Random weights, except an anchor whose published weights are installed at its native configuration
    (LiteMedSAM: the real extra)."""
    import torch

    from edge_medsam.compress import openvino_ir
    from edge_medsam.compress.reference_export import export_reference_onnx
    from edge_medsam.errors import InputError
    from edge_medsam.models.reference import build_reference, reference_graphs, reference_summary
    from edge_medsam.models.reference.litemedsam_weights import PRETRAINED, load_pretrained

    overrides = overrides or {}
    torch.manual_seed(0)
    model, weights = None, None
    if name in PRETRAINED and not overrides:
        try:
            model = load_pretrained(name)
            weights = model.weights
        except InputError as err:
            log(f"anchor {name}: random weights ({err.problem})")
    model = (model or build_reference(name, **overrides)).eval()
    encoder, encoder_example, decoder, decoder_example = reference_graphs(model)
    paths = {g: out / f"{g}.onnx" for g in ("encoder", "decoder")}
    precisions = tuple(p for p in precisions if p in ("fp16", "int8"))
    profile = getattr(model, "profile", None)
    preprocess = profile.preprocess if profile is not None else PreprocessConfig(size=model.image_size)
    key = export_key({"kind": "anchor", "name": name, "overrides": overrides, "precisions": precisions,
                      "calib": calib_count if "int8" in precisions else 0, "seed": seed,
                      "weights": weights["sha256"] if weights else "random"}, ANCHOR_SOURCES)
    fresh = not already_exported(out, key)
    if fresh:
        log(f"exporting anchor {name} to ONNX and OpenVINO IR ({', '.join(('fp32', *precisions))}) …")
        export_reference_onnx(model, out)
        for g in paths:
            openvino_ir.save_ir(openvino_ir.read_onnx(paths[g]), out / "openvino" / f"{g}.xml")
    else:
        log(f"reusing the export of anchor {name} in {out}")
    encoder_feed = _numpy_feed([n for n, _ in graph_inputs(paths["encoder"])], encoder_example)
    image_name = next(n for n, v in encoder_feed.items() if v.ndim == 4)
    if fresh:
        calibration = [{**encoder_feed, image_name: p.image}
                       for p in synthetic_probes(calib_count, preprocess.size, seed, preprocess)]
        _anchor_precision_graphs(out, paths, precisions, calibration)
        mark_exported(out, key)
    encoder_shapes = graph_output_shapes(paths["encoder"])
    decoder_inputs = graph_inputs(paths["decoder"])
    dynamic = {n: {axis for axis, d in enumerate(shape) if isinstance(d, str)} for n, shape in decoder_inputs}
    prompter = ExamplePrompter(_numpy_feed([n for n, _ in decoder_inputs], decoder_example), dynamic, encoder_shapes)

    def encoder_inputs(image: np.ndarray) -> dict[str, np.ndarray]:
        return {**encoder_feed, image_name: image}

    summary = reference_summary(name, **overrides)
    return Subject(name=f"{name}@{preprocess.size}", family=ANCHOR, preprocess=preprocess,
                   variants=_anchor_pairs(out, precisions),
                   encoder_inputs=encoder_inputs, prompter=prompter, torch_graphs=lambda: (encoder, decoder),
                   trained=weights is not None,
                   info={"source": "edge_medsam.models.reference", "reference": name, "overrides": overrides,
                         "summary": summary, "params": sum(p.numel() for p in model.parameters()),
                         "weights": {k: v for k, v in weights.items() if k != "path"} if weights else "random"})
