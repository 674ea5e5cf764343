"""`edge-medsam export`: a trained student → a verified model bundle (ONNX / OpenVINO, FP32 / FP16 / INT8).

Steps: export the two FP32 ONNX graphs (dynamo, slimmed, checked against the contract); check every format's
FP32 graphs against PyTorch on held-out images and stop if they disagree; derive FP16 (ONNX with sensitive ops
in FP32, OpenVINO FP16 weights) and INT8 (NNCF: symmetric QDQ ONNX, OpenVINO IR), with optional accuracy
control; measure every variant; write ``manifest.json`` and move the bundle into place atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge_medsam import __version__
from edge_medsam.compress import openvino_ir
from edge_medsam.compress.bundle import publish, staged_bundle, write_manifest, zip_bundle
from edge_medsam.compress.fp16 import FP32_OPS, convert_fp16
from edge_medsam.compress.graphs import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    DecoderGraph,
    EncoderGraph,
    graph_dims,
)
from edge_medsam.compress.onnx_export import check_onnx_file, export_student
from edge_medsam.compress.parity import (
    FP32_MIN_AGREEMENT,
    FP32_RTOL,
    PROMPT_KINDS,
    ChainOutputs,
    check_fp32,
    dice_scores,
    encoder_feed,
    measure,
    prompt_feeds,
    run_chain,
)
from edge_medsam.compress.probes import Probe, load_probes
from edge_medsam.compress.quantize import TIERS, ignored_nodes, qdq_summary, quantize_onnx, quantize_openvino
from edge_medsam.compress.runners import Runner, onnxruntime_runner, openvino_runner, torch_runner
from edge_medsam.compress.settings import ExportSettings
from edge_medsam.engine.logs import Steps
from edge_medsam.errors import InputError
from edge_medsam.modalities import MODALITIES
from edge_medsam.models.student import EdgeStudent
from edge_medsam.preprocess import PreprocessConfig
from edge_medsam.runtime.decoder_feed import best_of_k, decoder_feed
from edge_medsam.runtime.manifest import GraphFile, GraphVariant, Manifest, intensity_section
from edge_medsam.versions import EXPORT_LIBRARIES, installed_versions

GRAPHS = ("encoder", "decoder")
Log = Callable[[str], None]


@dataclass
class ExportReport:
    """What an export produced: the bundle, its zip, the manifest, and the time each step took."""

    bundle: Path
    manifest: Manifest
    archive: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _versions() -> dict[str, str]:
    return {"edge_medsam": __version__, **installed_versions(EXPORT_LIBRARIES)}


def _files(root: Path, paths: list[Path]) -> list[GraphFile]:
    return [GraphFile.of(root, p.relative_to(root).as_posix()) for p in paths]


def _runner(fmt: str, path: Path) -> Runner:
    return onnxruntime_runner(path) if fmt == "onnx" else openvino_runner(path)


def _rejection(trials: list[dict[str, Any]], budget: float | None) -> str:
    """Why every INT8 tier of a graph was refused."""
    spread = [t for t in trials if "compile_spread" in t]
    if len(spread) == len(trials):
        worst = max(t["compile_spread"] for t in spread)
        return f"every INT8 tier computed differently on each compilation (outputs apart by up to {worst:.3g} relative)"
    return f"every INT8 tier lost more than {budget} Dice on validation images" + (
        f" or computed differently on each compilation ({len(spread)} of {len(trials)} tiers)" if spread else "")


def _calibration_items(calib: list[Probe], reference: ChainOutputs) -> dict[str, list[dict[str, np.ndarray]]]:
    """Encoder feeds, and decoder feeds that cover every prompt path: sampled boxes/clicks with and without the
    self-prompt, the self-prompt alone, and a refinement round with the previous mask as mask prompt."""
    decoder: list[dict[str, np.ndarray]] = []
    for i, (probe, features) in enumerate(zip(calib, reference.encoder, strict=True)):
        decoder.append(decoder_feed(features, probe.point_coords, probe.point_labels, float(i % 2 == 0)))
        decoder.append(prompt_feeds(features, probe, reference.prompted_weight)["self_prompt"])
        boxes = reference.decoder["box"][i]
        best, _ = best_of_k(boxes["masks"], boxes["iou_predictions"])
        decoder.append(decoder_feed(features, probe.box_coords, probe.box_labels, mask_input=best[:, None]))
    return {"encoder": [encoder_feed(p) for p in calib], "decoder": decoder}


class _BundleBuilder:
    """Builds the graph variants of one export inside a staging folder."""

    def __init__(self, student: EdgeStudent, staging: Path, settings: ExportSettings, steps: Steps):
        self.student, self.root, self.settings, self.steps = student, staging, settings, steps
        self.torch = {"encoder": torch_runner(EncoderGraph(student), ENCODER_INPUTS, ENCODER_OUTPUTS),
                      "decoder": torch_runner(DecoderGraph(student), DECODER_INPUTS, DECODER_OUTPUTS)}
        self.files: dict[tuple[str, str, str], list[Path]] = {}  # (graph, precision, format) → files
        self.metrics: dict[str, Any] = {"parity": {}, "dice_drop": {}, "quantization": {}}
        self.prompted_weight = student.config.prompted_self_prompt_weight

    def path(self, fmt: str, graph: str, precision: str) -> Path:
        suffix = "" if precision == "fp32" else f".{precision}"
        return self.root / f"{graph}{suffix}.onnx" if fmt == "onnx" else self.root / "openvino" / f"{graph}{suffix}.xml"

    def main(self, graph: str, precision: str, fmt: str) -> Path:
        return self.files[(graph, precision, fmt)][0]

    def runners(self, fmt: str, precision: str) -> tuple[Runner, Runner]:
        return _runner(fmt, self.main("encoder", precision, fmt)), _runner(fmt, self.main("decoder", precision, fmt))

    def build(self, calib: list[Probe], held_out: list[Probe]) -> None:
        s = self.settings
        onnx_fp32 = self.steps("ONNX FP32 graphs (dynamo exporter, onnxslim, checker)",
                               lambda: export_student(self.student, self.root, s.opset))
        reference = self.steps("PyTorch FP32 reference on held-out images",
                               lambda: run_chain(self.torch["encoder"], self.torch["decoder"], held_out,
                                                 prompted_weight=self.prompted_weight))
        self.metrics["reference"] = {"dice": dice_scores(reference, held_out)}
        for fmt in s.formats:
            for graph in GRAPHS:
                if fmt == "onnx":
                    self.files[(graph, "fp32", fmt)] = [onnx_fp32[graph]]
                else:
                    self.files[(graph, "fp32", fmt)] = self.steps(
                        f"OpenVINO FP32 {graph}",
                        lambda g=graph: openvino_ir.save_ir(openvino_ir.read_onnx(onnx_fp32[g]),
                                                            self.path("openvino", g, "fp32")))
            self._measure(fmt, "fp32", held_out, reference)
            check_fp32(f"{fmt}", self.metrics["parity"][fmt]["fp32"], reference)
            if "fp16" in s.precision:
                for graph in GRAPHS:
                    self.files[(graph, "fp16", fmt)] = self.steps(f"{fmt} FP16 {graph}",
                                                                  lambda g=graph, f=fmt: self._fp16(f, g, onnx_fp32[g]))
                self._measure(fmt, "fp16", held_out, reference)
        if "int8" in s.precision:
            validation = calib[: s.eval_count]
            calib_reference = self.steps("PyTorch FP32 on calibration images",
                                         lambda: run_chain(self.torch["encoder"], self.torch["decoder"], calib,
                                                           prompted_weight=self.prompted_weight))
            items = _calibration_items(calib, calib_reference)
            n = len(validation)
            baseline = dice_scores(ChainOutputs(calib_reference.encoder[:n], calib_reference.auto[:n],
                                                {k: v[:n] for k, v in calib_reference.decoder.items()},
                                                {k: v[:n] for k, v in calib_reference.masks.items()},
                                                self.prompted_weight), validation)
            for fmt in s.formats:
                self._int8(fmt, onnx_fp32, items, validation, baseline)
                self._measure(fmt, "int8", held_out, reference)
        if "onnx" not in s.formats:
            for path in onnx_fp32.values():
                path.unlink()

    def _fp16(self, fmt: str, graph: str, onnx_fp32: Path) -> list[Path]:
        target = self.path(fmt, graph, "fp16")
        if fmt == "onnx":
            convert_fp16(onnx_fp32, target)
            return [target]
        return openvino_ir.save_ir(openvino_ir.read_onnx(onnx_fp32), target, fp16=True)

    def _measure(self, fmt: str, precision: str, held_out: list[Probe], reference: ChainOutputs) -> None:
        def run() -> dict[str, Any]:
            return measure(*self.runners(fmt, precision), held_out, reference)

        result = self.steps(f"parity {fmt} {precision} vs PyTorch FP32", run)
        self.metrics["parity"].setdefault(fmt, {})[precision] = result
        if precision != "fp32":
            ref = self.metrics["reference"]["dice"]
            self.metrics["dice_drop"].setdefault(fmt, {})[precision] = {
                k: round(ref[k] - result["dice"][k], 6) for k in PROMPT_KINDS}

    def _quantize(self, fmt: str, graph: str, tier: str, onnx_fp32: dict[str, Path],
                  items: dict[str, list[dict[str, np.ndarray]]]) -> list[Path]:
        fp32_model = onnx.load(str(onnx_fp32[graph]))
        ignored = ignored_nodes(fp32_model, graph, tier)
        target = self.path(fmt, graph, "int8")
        if fmt == "onnx":
            onnx.save(quantize_onnx(fp32_model, items[graph], ignored, tier), str(target))
            check_onnx_file(target)
            return [target]
        quantized = quantize_openvino(openvino_ir.read_onnx(onnx_fp32[graph]), items[graph], ignored, tier)
        return openvino_ir.save_ir(quantized, target)

    def _validation_dice(self, fmt: str, precisions: dict[str, str], validation: list[Probe]) -> dict[str, float]:
        runners = [_runner(fmt, self.main(g, precisions[g], fmt)) for g in GRAPHS]
        return dice_scores(run_chain(*runners, validation, prompted_weight=self.prompted_weight), validation)

    def _int8(self, fmt: str, onnx_fp32: dict[str, Path], items: dict[str, list[dict[str, np.ndarray]]],
              validation: list[Probe], baseline: dict[str, float]) -> None:
        """Quantize both graphs; with a Dice budget, try each tier per graph and fall back to FP32 where it fails."""
        budget = self.settings.max_dice_drop
        report: dict[str, Any] = {"preset": "PERFORMANCE (symmetric, signed)" if fmt == "onnx" else "MIXED",
                                  "model_type": "TRANSFORMER (int8_plain: none)",
                                  "calibration_items": {g: len(items[g]) for g in GRAPHS},
                                  "max_dice_drop": budget, "validation_dice_fp32": baseline}
        chosen = dict.fromkeys(GRAPHS, "fp32")
        drops: dict[str, float] = {}
        for graph in GRAPHS:
            trials = []
            for tier in TIERS:
                self.files[(graph, "int8", fmt)] = self.steps(
                    f"{fmt} INT8 {graph} ({tier})", lambda g=graph, t=tier: self._quantize(fmt, g, t, onnx_fp32, items))
                spread = self._compile_spread(fmt, graph, items[graph][0])
                if spread > FP32_RTOL:
                    trials.append({"tier": tier, "compile_spread": round(spread, 6)})
                    continue
                if budget is None:
                    chosen[graph] = tier
                    break
                dice = self._validation_dice(fmt, {**dict.fromkeys(GRAPHS, "fp32"), graph: "int8"}, validation)
                drop = max(baseline[k] - dice[k] for k in PROMPT_KINDS)
                trials.append({"tier": tier, "dice": dice, "drop": round(drop, 6)})
                if drop <= budget:
                    chosen[graph], drops[graph] = tier, drop
                    break
            report[graph] = {"chosen": chosen[graph], "trials": trials}
            if chosen[graph] == "fp32":
                self._keep_fp32(fmt, graph, report, _rejection(trials, budget))
        if budget is not None and all(chosen[g] != "fp32" for g in GRAPHS):
            dice = self._validation_dice(fmt, dict.fromkeys(GRAPHS, "int8"), validation)
            drop = max(baseline[k] - dice[k] for k in PROMPT_KINDS)
            report["combined"] = {"dice": dice, "drop": round(drop, 6)}
            if drop > budget:
                # Both graphs hold alone but not together: give up the one that lost more on its own.
                worse = max(GRAPHS, key=lambda g: drops[g])
                self._keep_fp32(fmt, worse, report, f"INT8 encoder + decoder together lost {drop:.4f} Dice > {budget}")
        if fmt == "onnx":
            report["qdq"] = {g: qdq_summary(onnx.load(str(self.main(g, "int8", fmt))))
                             for g in GRAPHS if report[g]["chosen"] != "fp32"}
        self.metrics["quantization"][fmt] = report

    def _compile_spread(self, fmt: str, graph: str, feed: dict[str, np.ndarray]) -> float:
        """How far two compilations of the INT8 graph disagree on one feed (max |difference| relative to
        max(1, max |output|)); a variant that computes differently on each load is not shipped."""
        path = self.main(graph, "int8", fmt)
        first, second = _runner(fmt, path)(feed), _runner(fmt, path)(feed)
        return max(float(np.abs(first[k].astype(np.float64) - second[k]).max()) / max(1.0, float(np.abs(first[k]).max()))
                   for k in first if first[k].dtype.kind == "f" and first[k].size)

    def _keep_fp32(self, fmt: str, graph: str, report: dict[str, Any], reason: str) -> None:
        """The INT8 variant of ``graph`` becomes its FP32 file; the manifest says why."""
        for path in self.files.get((graph, "int8", fmt), []):
            path.unlink(missing_ok=True)
        self.files[(graph, "int8", fmt)] = list(self.files[(graph, "fp32", fmt)])
        report[graph]["chosen"] = "fp32"
        report[graph]["reason"] = reason
        self.steps.log(f"export: {fmt} INT8 {graph} kept in FP32: {reason}")

    def variants(self) -> list[GraphVariant]:
        return [GraphVariant(graph, precision, fmt, _files(self.root, paths))
                for (graph, precision, fmt), paths in sorted(self.files.items(), key=lambda kv: (kv[0][2], kv[0][1],
                                                                                               kv[0][0]))]


def build_manifest(student: EdgeStudent, builder: _BundleBuilder, settings: ExportSettings, name: str, version: str,
                   preprocess: PreprocessConfig, lineage: dict[str, Any], data: dict[str, Any]) -> Manifest:
    """The manifest of a built bundle."""
    config = student.config
    dims = graph_dims(config)
    model = {"kind": "student", "config": config.to_dict(), "dims": dims, "opset": settings.opset,
             "dynamic": {"objects": {"min": 1, "max": 1024}, "points": {"min": 1, "max": 256}}}
    outputs = {"masks": {"kind": "logits", "threshold": 0.0, "stride": 4, "size": dims["4g"],
                         "select": "per object, the mask with the highest iou_predictions"},
               "patch_logits": {"kind": "logits", "threshold": 0.0, "stride": 16},
               "confidence": {"kind": "probability", "meaning": "predicted Dice of the self-prompt's patch map"},
               "modality_index": {"meaning": "the modality used: the one given, or the recognised one for -1"}}
    metrics = {"data": data, **builder.metrics,
               "fp32_gate": {"rtol": FP32_RTOL, "min_mask_agreement": FP32_MIN_AGREEMENT, "auto_modality": "all"},
               "fp16_onnx_fp32_ops": list(FP32_OPS)}
    export_settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
    return Manifest(name=name, version=version, model=model, modalities={m.name: m.index for m in MODALITIES},
                    preprocess=preprocess.to_dict(), intensity=intensity_section(), outputs=outputs,
                    variants=builder.variants(), metrics=metrics,
                    lineage={**lineage, "versions": _versions(), "export_settings": export_settings,
                             "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def export_student_bundle(student: EdgeStudent, out: str | Path, calib: list[Probe], held_out: list[Probe],
                          settings: ExportSettings | None = None, *, name: str = "edge-medsam-student",
                          version: str = "0", preprocess: PreprocessConfig | None = None,
                          lineage: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
                          log: Log = print) -> ExportReport:
    """Export a student into a bundle folder at ``out`` (replacing an older bundle there atomically)."""
    settings = settings or ExportSettings()
    steps = Steps(log, prefix="export: ")
    student = student.eval()
    preprocess = preprocess or PreprocessConfig(size=student.config.image_size)
    with staged_bundle(out) as staging:
        builder = _BundleBuilder(student, staging, settings, steps)
        builder.build(calib, held_out)
        data = {**(data or {}), "calib_images": len(calib), "held_out_images": len(held_out),
                "held_out_modalities": sorted({p.modality for p in held_out})}
        manifest = build_manifest(student, builder, settings, name, version, preprocess, lineage or {}, data)
        write_manifest(staging, manifest)
        bundle = publish(staging, out)
    archive = steps("zip", lambda: zip_bundle(bundle)) if settings.zip else None
    log(f"export: bundle written to {bundle}" + (f" and {archive}" if archive else ""))
    return ExportReport(bundle, manifest, archive, steps.seconds)


def export_bundle(checkpoint: str | Path, out: str | Path, calib: str | Path, settings: ExportSettings | None = None,
                  log: Log = print) -> ExportReport:
    """`edge-medsam export`: load a student model file, draw probes from ``calib``, export and verify a bundle."""
    from edge_medsam.engine.checkpoint import load_checkpoint
    from edge_medsam.models.files import load_model
    from edge_medsam.runtime.manifest import sha256_file

    settings = settings or ExportSettings()
    checkpoint = Path(checkpoint)
    student = load_model(checkpoint)
    if not isinstance(student, EdgeStudent):
        raise InputError(f"{type(student).__name__} models cannot be exported into a bundle yet", path=checkpoint,
                         fix="export an edge student (edge-medsam distill writes student.pt)")
    state = load_checkpoint(checkpoint)
    extra = state.get("extra") or {}
    preprocess = (PreprocessConfig.from_dict(extra["preprocess"]) if "preprocess" in extra
                  else PreprocessConfig(size=student.config.image_size))
    calib_probes, held_out = load_probes(calib, settings.calib_count, settings.eval_count, preprocess, settings.seed)
    digest = sha256_file(checkpoint)
    lineage = {"model_file": checkpoint.name, "model_sha256": digest, "model_spec": state.get("spec"),
               "recipe": extra.get("recipe"), "teacher": extra.get("teacher"), "trained_on": extra.get("trained_on")}
    return export_student_bundle(student, out, calib_probes, held_out, settings, name=checkpoint.stem,
                                 version=str(extra.get("version", digest[:12])), preprocess=preprocess, lineage=lineage,
                                 data={"calib": str(calib)}, log=log)
