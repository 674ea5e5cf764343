"""`edge-medsam predict`: segment images, DICOM series, NIfTI volumes and MedSAM .npz cases with a bundle (no torch).

Each input gets a one-line JSON summary (stage latencies, modality, objects, library warnings) on stdout and in
``OUT/summary.jsonl``. An input that fails gets a one-line error and the batch goes on; the exit code is 1
when any input failed. Library warnings go to ``OUT/predict.log``, not to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_medsam.cli.remarks import held_remarks, log_file
from edge_medsam.cli.structure_prompts import structure_prompts
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.runtime.backends import BACKEND_CHOICES
from edge_medsam.runtime.bundle import DEMO_BUNDLE
from edge_medsam.runtime.corrections import CorrectionSession
from edge_medsam.runtime.inputs import LoadedInput, discover_inputs, load_input
from edge_medsam.runtime.interactor import SliceFrame
from edge_medsam.runtime.manifest import PRECISIONS
from edge_medsam.runtime.outputs import OUTPUT_FORMATS, output_format, write_output
from edge_medsam.runtime.predictor import Predictor
from edge_medsam.runtime.protocol import Click3D
from edge_medsam.runtime.volume import (
    DEFAULT_CACHE,
    DEFAULT_MARGIN,
    DEFAULT_PROPAGATION,
    PROPAGATIONS,
    SlicePrompt,
    VolumeSegmenter,
)

SUMMARY = "summary.jsonl"
LOG = "predict.log"


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `predict` command."""
    parser = commands.add_parser(
        "predict", help="segment images and volumes with a model bundle (torch-free runtime)",
        description="Segment images (PNG/JPEG/TIFF/DICOM), DICOM series, NIfTI volumes and MedSAM-on-Laptop .npz "
                    "cases. Without prompts every input is segmented by the model's self-prompt.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="files, folders of images, DICOM series folders, zips or DICOMDIR media")
    parser.add_argument("--series", metavar="UID_OR_NUMBER",
                        help="the DICOM series to read (SeriesInstanceUID or SeriesNumber) where an input holds "
                             "several; every input folder is then searched whole for it")
    parser.add_argument("--bundle", type=Path, help="bundle folder or .zip (default: the shipped demo bundle)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the masks and summary.jsonl")
    parser.add_argument("--format", default="auto", choices=OUTPUT_FORMATS,
                        help="auto: npz for .npz cases, png for 2D, dicom-seg for DICOM volumes, nifti otherwise; "
                             "dicom-seg also for 2D DICOM images (nifti or png where the source cannot have one)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--device", help="cpu, cuda[:N] (ONNX Runtime / TensorRT); CPU, GPU, NPU, AUTO (OpenVINO)")
    parser.add_argument("--threads", type=int, help="CPU threads per graph (default: the backend's choice)")
    parser.add_argument("--hint", default="latency", choices=("latency", "throughput"),
                        help="OpenVINO performance hint")
    parser.add_argument("--cache-dir", type=Path, help="unpacked bundles and compiled-model caches")
    parser.add_argument("--modality", default="auto", help="auto (file, then model), a name (ct, mr, ...) or an index")
    parser.add_argument("--window", help="CT window: a preset (soft_tissue, lung, bone, ...) or centre,width")
    parser.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"),
                        help="a 2D box in pixels (repeat for several objects)")
    parser.add_argument("--box3d", nargs=6, type=float, action="append",
                        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"), help="a 3D box, MedSAM-on-Laptop order")
    parser.add_argument("--prompts-from", type=Path, metavar="RTSTRUCT_OR_SEG",
                        help="volumes: a 3D box per ROI of an RT Structure Set or segment of a DICOM-SEG drawn on the "
                             "input series (objects 1, 2, ... in the file's order, named after them in the output)")
    parser.add_argument("--point", nargs="+", type=float, action="append", metavar="V",
                        help="x y label (2D) or x y z label (volumes); label 1 foreground, 0 background")
    parser.add_argument("--click3d", action="append", metavar="LABEL,I,J,K,+|-",
                        help="volumes: a click on object LABEL (the --box3d objects are 1, 2, ...) at voxel (i, j, k), "
                             "+ foreground, - background; the click corrects its slice and the correction is "
                             "carried to the neighbouring slices (repeat; applied in order)")
    parser.add_argument("--correct-auto", action="store_true",
                        help="2D: the --point clicks correct the self-prompted foreground (add a missed region, "
                             "remove a false one) instead of segmenting the clicked object")
    parser.add_argument("--axis", default="axial", help="slicing plane of volumes: axial, coronal, sagittal, 0, 1, 2")
    parser.add_argument("--cache-size", type=int, default=DEFAULT_CACHE, help="slices whose embeddings are kept")
    parser.add_argument("--margin", type=int, default=DEFAULT_MARGIN,
                        help="pixels added around a mask's box when propagating through a volume")
    parser.add_argument("--propagation", default=DEFAULT_PROPAGATION, choices=PROPAGATIONS,
                        help="what a slice takes from its neighbour when propagating: its mask's box, or that and "
                             "its mask logits")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summaries on stdout")
    parser.set_defaults(handler=run_predict)


def _bundle_path(args: argparse.Namespace) -> Path:
    if args.bundle is not None:
        return args.bundle
    if DEMO_BUNDLE.is_dir():
        return DEMO_BUNDLE
    raise EdgeMedSAMError("no --bundle given and this installation has no demo bundle", path=DEMO_BUNDLE,
                          fix="pass --bundle PATH (a folder or .zip made by `edge-medsam export`)")


def _modality(text: str) -> str | int:
    return int(text) if text.strip().isdigit() else text


def _points(args: argparse.Namespace, is_3d: bool) -> list[list[float]]:
    width = 4 if is_3d else 3
    points = args.point or []
    for point in points:
        if len(point) != width:
            layout = "x y z label" if is_3d else "x y label"
            raise InputError(f"--point {' '.join(f'{v:g}' for v in point)} is not {layout}",
                             fix=f"give --point {layout} for {'volumes' if is_3d else '2D images'}")
    return points


def _clicks3d(args: argparse.Namespace, path: Path) -> list[Click3D]:
    clicks = []
    for text in args.click3d or []:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 5 or parts[4] not in ("+", "-") or not all(p.isdigit() for p in parts[:4]):
            raise InputError(f"--click3d {text!r} is not label,i,j,k,+|-", path=path,
                             fix="give e.g. --click3d 1,120,98,40,+ (object 1, voxel i j k, foreground)")
        label, i, j, k = (int(p) for p in parts[:4])
        clicks.append(Click3D(label, i, j, k, parts[4] == "+"))
    return clicks


def _segment_image(predictor: Predictor, loaded: LoadedInput, args: argparse.Namespace) -> dict[str, Any]:
    if args.box3d or args.click3d or args.prompts_from:
        option = "--box3d" if args.box3d else "--click3d" if args.click3d else "--prompts-from"
        raise InputError(f"{option} was given for a 2D image", path=loaded.path,
                         fix="use --box x0 y0 x1 y1 and --point x y label")
    case_boxes = loaded.case.boxes if loaded.case is not None else None
    boxes = args.box or (case_boxes.tolist() if case_boxes is not None else None)
    points = _points(args, is_3d=False)
    if points and boxes and len(boxes) > 1:
        raise InputError(f"{len(boxes)} boxes and --point: points refine one object", path=loaded.path,
                         fix="give points with at most one --box")
    if args.correct_auto and (boxes or not points):
        raise InputError("--correct-auto corrects the self-prompted mask with --point clicks", path=loaded.path,
                         fix="give --point x y label clicks and no --box")
    coords = np.array([p[:2] for p in points], np.float32) if points else None
    point_labels = np.array([p[2] for p in points], np.float32) if points else None
    predictor.set_image(loaded.image, modality=_modality(args.modality), window=args.window)
    if args.correct_auto:
        automatic = predictor.predict()
        result = predictor.predict(points=coords, labels=point_labels, mask=automatic.low_res_logits[0], auto=True)
        result.latency_ms["decoder"] += automatic.latency_ms["decoder"]
    else:
        result = predictor.predict(points=coords, labels=point_labels, boxes=boxes)
    labels_map = result.label_map()
    counts = np.bincount(labels_map.ravel(), minlength=len(result) + 1)
    objects = [{"label": i + 1, "pixels": int(counts[i + 1]), "score": round(float(s), 4)}
               for i, s in enumerate(result.scores)]
    return {"labels": labels_map, "objects": objects, "latency_ms": result.latency_ms, "modality": result.modality,
            "modality_source": result.modality_source, "modality_confidence": result.modality_confidence,
            "self_prompt_confidence": result.self_prompt_confidence,
            "prompt": "auto" if not boxes and not points else "corrected auto" if args.correct_auto else "prompts"}


def _segment_volume(predictor: Predictor, loaded: LoadedInput, args: argparse.Namespace) -> dict[str, Any]:
    if args.correct_auto:
        raise InputError("--correct-auto works on 2D images", path=loaded.path,
                         fix="drop --correct-auto; volumes take --box3d or --point x y z label")
    if args.box:
        raise InputError("--box was given for a volume", path=loaded.path,
                         fix="use --box3d x0 y0 z0 x1 y1 z1, or --point x y z label")
    case_boxes = loaded.case.boxes if loaded.case is not None else None
    boxes3d = args.box3d or (case_boxes.tolist() if case_boxes is not None else [])
    by_slice: dict[int, list[list[float]]] = {}
    for x, y, z, label in _points(args, is_3d=True):
        if not z.is_integer():
            raise InputError(f"--point z {z:g} is not a slice index", path=loaded.path, fix="give z as a whole number")
        by_slice.setdefault(int(z), []).append([x, y, label])
    segmenter = VolumeSegmenter(predictor, loaded.volume, axis=args.axis, modality=_modality(args.modality),
                                window=args.window, cache_size=args.cache_size, margin=args.margin,
                                propagation=args.propagation)
    names: dict[int, str] = {}
    if args.prompts_from is not None:
        if args.box3d:
            raise InputError("--box3d and --prompts-from were both given", path=loaded.path,
                             fix="give the 3D boxes one way, not both")
        boxes3d, names = structure_prompts(args.prompts_from, segmenter)
    if args.click3d:
        if by_slice:
            raise InputError("--point and --click3d were both given", path=loaded.path,
                             fix="give volume clicks as --click3d label,i,j,k,+|- only")
        done = _correct_volume(segmenter, boxes3d, _clicks3d(args, loaded.path))
    else:
        done = _propagate(segmenter, boxes3d, by_slice)
    for item in done["objects"]:
        if item["label"] in names:
            item["name"] = names[item["label"]]
    return done


def _propagate(segmenter: VolumeSegmenter, boxes3d: list[list[float]], by_slice: dict[int, list[list[float]]]
               ) -> dict[str, Any]:
    """The 3D boxes and the slice clicks, each propagated through the volume."""
    prompts = [SlicePrompt(z, np.array([p[:2] for p in pts], np.float32), np.array([p[2] for p in pts], np.float32))
               for z, pts in by_slice.items()]
    result = segmenter.segment(boxes3d, prompts)
    objects = [{"label": o.label, "prompt": o.prompt, "voxels": o.voxels, "score": round(o.score, 4),
                "slices": [o.slices[0], o.slices[-1]] if o.slices else []} for o in result.objects]
    return {"labels": result.labels, "objects": objects, "latency_ms": result.latency_ms, "modality": result.modality,
            "modality_source": result.modality_source, "modality_confidence": result.modality_confidence,
            "slices": segmenter.count, "cache": {"hits": result.cache_hits, "misses": result.cache_misses},
            "encoder_runs": result.encoder_runs}


def _correct_volume(segmenter: VolumeSegmenter, boxes3d: list[list[float]], clicks: list[Click3D]) -> dict[str, Any]:
    """The --box3d objects (labels 1..N), then every --click3d correction in order."""
    session = CorrectionSession(segmenter)
    frame = SliceFrame(segmenter.volume, segmenter.array_axis)
    for label, box in enumerate(boxes3d, start=1):
        session.add_box(label, box)
    for click in clicks:
        session.add_click(frame.click(click))
    labels = session.labels
    across = tuple(a for a in range(3) if a != segmenter.array_axis)
    objects = []
    for label, obj in sorted(session.objects.items()):
        slices = np.flatnonzero((labels == label).any(axis=across))
        objects.append({"label": label, "prompt": "box3d" if obj.box3d is not None else "clicks",
                        "voxels": int(np.count_nonzero(labels == label)), "clicks": len(obj.clicks),
                        "slices": [int(slices[0]), int(slices[-1])] if slices.size else []})
    reference = segmenter.reference
    return {"labels": labels, "objects": objects, "latency_ms": segmenter.latency_ms,
            "modality": reference.modality, "modality_source": segmenter.plan.source,
            "modality_confidence": reference.modality_confidence, "slices": segmenter.count,
            "cache": {"hits": segmenter.cache.hits, "misses": segmenter.cache.misses},
            "encoder_runs": segmenter.cache.misses, "decoder_runs": session.decoder_runs}


def process(predictor: Predictor, path: Path, args: argparse.Namespace, taken: set[Path]) -> dict[str, Any]:
    """Segment one input and write its mask; returns its summary (raises EdgeMedSAMError on a bad input)."""
    start = time.perf_counter()
    loaded = load_input(path, series=args.series)
    read_ms = (time.perf_counter() - start) * 1e3
    fmt = output_format(args.format, loaded)
    done = _segment_volume(predictor, loaded, args) if loaded.is_3d else _segment_image(predictor, loaded, args)
    labels = done.pop("labels")
    begin = time.perf_counter()
    names = {o["label"]: o.get("name", f"object {o['label']}") for o in done["objects"]}
    written, fmt, note = write_output(args.out, labels, loaded, fmt, names, taken)
    latency = {"read": read_ms, **{k: v for k, v in done.pop("latency_ms").items() if k != "read"},
               "write": (time.perf_counter() - begin) * 1e3, "total": (time.perf_counter() - start) * 1e3}
    shape = loaded.volume.shape if loaded.volume is not None else loaded.image.shape
    return {"input": str(path), "status": "ok", "output": str(written), "format": fmt,
            "kind": "3d" if loaded.is_3d else "2d", "shape": list(shape), **done,
            "latency_ms": {k: round(v, 2) for k, v in latency.items()}, **({"note": note} if note else {})}


def _one_line(err: Exception, path: Path) -> str:
    if isinstance(err, EdgeMedSAMError):
        return str(err if err.path is not None else err.with_path(path))
    return f"{path}: unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


def _report(record: dict[str, Any], remarks: list[str], path: Path, log: logging.Logger) -> None:
    """Library remarks go to the log and the summary; a mask written in another format than asked gets one line."""
    for remark in remarks:
        log.warning("%s", remark if str(path) in remark else f"{path}: {remark}")
    if remarks:
        record["warnings"] = remarks
    if "note" in record:
        print(f"edge-medsam: warning: {path}: {record['note']}", file=sys.stderr)
        log.warning("%s: %s", path, record["note"])


def run_predict(args: argparse.Namespace) -> int:
    """Load the bundle once, then segment every input; 1 if any input failed."""
    predictor = Predictor.from_bundle(_bundle_path(args), backend=args.backend, precision=args.precision,
                                      device=args.device, threads=args.threads, hint=args.hint,
                                      cache_dir=args.cache_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = discover_inputs(args.inputs, args.series)
    from tqdm import tqdm

    failed, taken = 0, set()
    common = {"bundle": predictor.bundle.name, "backend": predictor.backend.describe(), "precision": args.precision}
    with open(args.out / SUMMARY, "w", encoding="utf-8") as summary, log_file(args.out / LOG, __name__) as log:
        for path in tqdm(inputs, desc="predict", unit="input", disable=True if args.quiet else None, file=sys.stderr):
            with held_remarks() as remarks:
                try:
                    record = {**process(predictor, path, args, taken), **common}
                except Exception as err:  # one bad input must not stop a hospital batch; the error is reported
                    failed += 1
                    line = _one_line(err, path)
                    print(f"edge-medsam: error: {line}", file=sys.stderr)
                    log.error(line)
                    record = {"input": str(path), "status": "error", "error": line, **common}
            _report(record, remarks, path, log)
            summary.write(json.dumps(record) + "\n")
            summary.flush()
            if not args.quiet:
                print(json.dumps(record), flush=True)
    if failed:
        print(f"edge-medsam: {failed} of {len(inputs)} inputs failed (see above)", file=sys.stderr)
    return 1 if failed else 0
