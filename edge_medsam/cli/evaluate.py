"""`edge-medsam eval`: Dice/NSD of a model with box, 1-point, 5-point and automatic prompts on a dataset, or
(``--protocol interactive3d``) a bundle through the CVPR 2025 interactive 3D protocol on labelled volumes."""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_medsam.errors import InputError

SPLITS = ("train", "val", "test")
PROTOCOLS = ("samed2d", "interactive3d")
INTERACTORS = ("ours", "slice-propagation", "litemedsam")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `eval` command."""
    parser = commands.add_parser("eval", help="score a model on a dataset (SAM-Med2D prompt protocol) or a bundle on "
                                              "volumes (--protocol interactive3d)")
    parser.add_argument("--protocol", default="samed2d", choices=PROTOCOLS,
                        help="samed2d (default: --model on --data) or interactive3d (--bundle on CASES: box, then 5 "
                             "simulated clicks, as the CVPR 2025 challenge)")
    parser.add_argument("cases", nargs="*", type=Path,
                        help="interactive3d: challenge .npz cases, or volumes (NIfTI, NRRD, DICOM series) with --labels")
    parser.add_argument("--model", type=Path, help="edge-medsam model file or official SAM checkpoint (samed2d)")
    parser.add_argument("--data", type=Path, help="dataset folder (samed2d)")
    parser.add_argument("--bundle", type=Path, help="interactive3d: the runtime bundle (folder or .zip)")
    parser.add_argument("--labels", nargs="+", type=Path, default=None,
                        help="interactive3d: one label file per case, in order (NIfTI, NRRD, DICOM-SEG, or a "
                             "ground-truth .npz with key gts); a challenge case may hold its own gts")
    parser.add_argument("--boxes", default="case", choices=("case", "from-gt", "none"),
                        help="interactive3d box step: the case's boxes (default; none: no box step), from-gt where the "
                             "case has none, or none")
    parser.add_argument("--interactors", default="ours",
                        help=f"interactive3d: comma-separated {', '.join(INTERACTORS)} (the bundle's 3D corrections, "
                             "the slice-propagation baseline on the same bundle, and on LiteMedSAM's published "
                             "weights: torch, the real extra and --modality) (default ours)")
    parser.add_argument("--backend", default="auto", help="interactive3d: runtime backend (default auto)")
    parser.add_argument("--save-segs", action="store_true",
                        help="interactive3d: also write each case's prediction per interactor as a challenge output "
                             "(.npz with segs and all_segs)")
    parser.add_argument("--layout", default="auto", help="auto (default), folder_pairs, samed2d, nnunet, medsam_npz")
    parser.add_argument("--modality", default=None, help="modality for layouts that do not say it")
    parser.add_argument("--split", default="test", choices=(*SPLITS, "all"),
                        help="which split to score (default test; 'all' for a dedicated test set)")
    parser.add_argument("--split-fractions", default="0.8,0.1,0.1",
                        help="train,val,test or train,test fractions; to score a training run's held-out set give "
                             "its recipe's 1-test_fraction,test_fraction (e.g. 0.85,0.15) (default 0.8,0.1,0.1)")
    parser.add_argument("--seed", type=int, default=0, help="split seed, as in training (default 0)")
    parser.add_argument("--prompts", default="box,1pt,5pt,auto,refine",
                        help="comma-separated: box, 1pt, 5pt, auto, refine (auto + up to 3 correction clicks)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads, or the runtime's for interactive3d (default 1: fastest for one "
                             "image at a time on small CPUs; 0 keeps the library's default)")
    parser.add_argument("--max-objects", type=int, default=8,
                        help="objects scored per image, evenly spread over sizes (default 8; 0 = all)")
    parser.add_argument("--limit", type=int, default=None,
                        help="score at most N images, taken in turn from each modality")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for metrics.json, metrics.md, objects.csv (interactive3d: cases.csv, results.json, "
                             "report.md)")
    parser.set_defaults(handler=run_eval)


def parse_fractions(text: str) -> dict[str, float]:
    """'0.8,0.1,0.1' → {"train": 0.8, "val": 0.1, "test": 0.1}; '0.85,0.15' → {"train": 0.85, "test": 0.15}."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as err:
        raise InputError(f"split fractions {text!r} are not numbers", fix="give e.g. 0.8,0.1,0.1") from err
    if len(values) not in (2, 3):
        raise InputError(f"split fractions {text!r} are not two or three numbers",
                         fix="give train,val,test (e.g. 0.8,0.1,0.1) or train,test (e.g. 0.85,0.15)")
    names = SPLITS if len(values) == 3 else ("train", "test")
    return dict(zip(names, values, strict=True))


def interleave_modalities(samples: Sequence[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` samples, taken in turn from each modality (in dataset order within each)."""
    if limit is None:
        return list(samples)
    if limit < 1:
        raise InputError(f"--limit {limit} leaves nothing to score", fix="give a positive number of images")
    queues: dict[str, list[Any]] = defaultdict(list)
    for sample in samples:
        queues[sample.modality].append(sample)
    picked: list[Any] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues.values()):
        picked += [q[depth] for q in queues.values() if depth < len(q)][: limit - len(picked)]
        depth += 1
    return picked


def _device(name: str) -> Any:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"unknown torch device {name!r}", fix="use cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for but no CUDA GPU is available", fix="use --device cpu")
    return device


def run_eval(args: argparse.Namespace) -> int:
    """Open the model and the dataset, evaluate, write the report and print it."""
    if args.protocol == "interactive3d":
        return run_interactive3d(args)
    for option in ("model", "data"):
        if getattr(args, option) is None:
            raise InputError(f"--{option} is missing", fix=f"give --{option} (or use --protocol interactive3d)")
    if args.cases:
        raise InputError(f"{len(args.cases)} case paths given to the samed2d protocol",
                         fix="give a dataset with --data, or use --protocol interactive3d for cases")
    from edge_medsam.data.layouts import open_dataset, split_samples
    from edge_medsam.engine.threads import torch_threads
    from edge_medsam.evaluation import evaluate, segmenter_for
    from edge_medsam.evaluation.protocol import check_modes
    from edge_medsam.models.files import load_model

    modes = check_modes(args.prompts)
    device = _device(args.device)
    if args.max_objects < 0:
        raise InputError(f"--max-objects {args.max_objects} is negative", fix="give 0 (all objects) or more")
    if args.threads < 0:
        raise InputError(f"--threads {args.threads} is negative", fix="give 1 or more, or 0 for torch's default")
    dataset = open_dataset(args.data, args.layout, args.modality)
    samples = dataset.samples
    if args.split != "all":
        splits = split_samples(samples, parse_fractions(args.split_fractions), seed=args.seed)
        samples = splits.get(args.split, [])
        if not samples:
            raise InputError(f"the {args.split} split of {len(dataset)} samples is empty", path=args.data,
                             fix="use --split all for a dedicated test set, or other --split-fractions")
    samples = interleave_modalities(samples, args.limit)
    model = load_model(args.model, map_location=device)
    segmenter = segmenter_for(model, name=args.model.stem)
    with torch_threads(args.threads or None):
        report = evaluate(segmenter, samples, modes, max_objects=args.max_objects or None)
    report.settings.update({"model_file": str(args.model), "data": str(args.data), "layout": dataset.layout,
                            "split": args.split, "split_fractions": args.split_fractions, "seed": args.seed,
                            "limit": args.limit, "device": args.device})
    if report.images == 0:
        first = report.skipped[0][1] if report.skipped else "no samples"
        raise InputError(f"no image could be scored ({first})", path=args.data, fix="check the dataset files")
    paths = report.write(args.out)
    print(report.markdown())
    print(f"written: {paths['json']}, {paths['markdown']}, {paths['csv']}")
    return 0


def _interactors(args: argparse.Namespace) -> list[Any]:
    from edge_medsam.evaluation.interactive3d_baseline import SegmenterSlicePropagation, SlicePropagationInteractor
    from edge_medsam.runtime import Predictor
    from edge_medsam.runtime.interactor import RuntimeInteractor

    def litemedsam() -> SegmenterSlicePropagation:
        import torch

        from edge_medsam.evaluation.torch_segmenters import TeacherSegmenter
        from edge_medsam.models.reference.litemedsam_weights import load_pretrained

        if args.threads:  # this process runs one case at a time: its torch threads are --threads
            torch.set_num_threads(args.threads)
        return SegmenterSlicePropagation(TeacherSegmenter(load_pretrained("litemedsam"), name="litemedsam"),
                                         modality=modality)

    names = [name.strip() for name in args.interactors.split(",") if name.strip()]
    unknown = [name for name in names if name not in INTERACTORS]
    if unknown or not names:
        raise InputError(f"unknown interactors {unknown or args.interactors!r}", fix=f"use {', '.join(INTERACTORS)}")
    predictor = Predictor.from_bundle(args.bundle, backend=args.backend, threads=args.threads or None)
    modality = args.modality or "auto"
    made = {"ours": lambda: RuntimeInteractor(predictor, modality=modality),
            "slice-propagation": lambda: SlicePropagationInteractor(predictor, modality=modality),
            "litemedsam": litemedsam}
    return [made[name]() for name in dict.fromkeys(names)]


def run_interactive3d(args: argparse.Namespace) -> int:
    """Run every interactor on every case, write cases.csv, results.json and report.md (and segs), print the table."""
    from edge_medsam.benchmark.machine import describe_machine, load_average, machine_slug
    from edge_medsam.evaluation.interactive3d import run_case
    from edge_medsam.evaluation.interactive3d_cases import load_case
    from edge_medsam.evaluation.interactive3d_report import markdown, write_report
    from edge_medsam.io.challenge_npz import write_challenge_segs
    from edge_medsam.metrics import NSD_TOLERANCE

    if args.bundle is None or not args.cases:
        raise InputError("interactive3d needs --bundle and at least one case",
                         fix="give e.g. edge-medsam eval --protocol interactive3d case.npz --bundle B --out DIR")
    if args.labels is not None and len(args.labels) != len(args.cases):
        raise InputError(f"{len(args.labels)} label files for {len(args.cases)} cases",
                         fix="give one --labels file per case, in the order of the cases")
    interactors = _interactors(args)
    machine = describe_machine()  # before the runs: its load average is the one they started under
    labels = args.labels or [None] * len(args.cases)
    results = []
    for path, truth in zip(args.cases, labels, strict=True):
        case = load_case(path, truth, boxes=args.boxes, modality=args.modality)
        for interactor in interactors:
            result = run_case(interactor, case, keep_predictions=args.save_segs)
            results.append(result)
            print(f"{interactor.name} {case.name}: {len(case.labels)} objects, box DSC "
                  f"{result.steps[0].case_dice:.3f}, final DSC {result.final_dice:.3f}, DSC_AUC {result.dsc_auc:.3f}, "
                  f"{result.total_seconds:.1f} s", flush=True)
            if args.save_segs:
                write_challenge_segs(args.out / interactor.name / f"{case.name}.npz",
                                     result.prediction.transpose(2, 1, 0),
                                     [p.transpose(2, 1, 0) for p in result.all_predictions])
    settings = {"bundle": str(args.bundle), "backend": args.backend, "threads": args.threads, "boxes": args.boxes,
                "interactors": [i.name for i in interactors], "cases": [str(p) for p in args.cases],
                "labels": [str(p) if p else None for p in labels], "tolerance_mm": NSD_TOLERANCE,
                "machine": {"slug": machine_slug(machine), "cpu": machine["cpu"],
                            "usable_cores": machine["usable_cores"], "memory_gb": machine["memory_gb"],
                            "load_average_start": machine["load_average_start"], "load_average_end": load_average()}}
    paths = write_report(args.out, results, settings)
    print(markdown(results, settings))
    print(f"written: {paths['csv']}, {paths['json']}, {paths['markdown']}")
    return 0
