"""`edge-medsam eval`: Dice/NSD of a model with box, 1-point, 5-point and automatic prompts on a dataset."""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_medsam.errors import InputError

SPLITS = ("train", "val", "test")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `eval` command."""
    parser = commands.add_parser("eval", help="score a model on a dataset (SAM-Med2D prompt protocol)")
    parser.add_argument("--model", type=Path, required=True, help="edge-medsam model file or official SAM checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
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
                        help="torch intra-op threads (default 1: fastest for one image at a time on small CPUs; "
                             "0 keeps torch's default)")
    parser.add_argument("--max-objects", type=int, default=8,
                        help="objects scored per image, evenly spread over sizes (default 8; 0 = all)")
    parser.add_argument("--limit", type=int, default=None,
                        help="score at most N images, taken in turn from each modality")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    parser.add_argument("--out", type=Path, required=True, help="folder for metrics.json, metrics.md, objects.csv")
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
