"""`edge-medsam bench`: the latency benchmark harness (``edge_medsam.benchmark``; also ``python -m benchmarks``)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_medsam.errors import InputError


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


def _ints(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _csv(value))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of integers") from err


def _volume(value: str) -> tuple[int, int]:
    slices, _, side = value.lower().partition("x")
    if not (slices.isdigit() and side.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not SLICESxSIDE (e.g. 287x512)")
    return int(slices), int(side)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `bench` command."""
    parser = commands.add_parser(
        "bench", help="latency / size / accuracy benchmark of our models against the public anchors",
        description="Measure bundles, student presets or model files and the reference anchors (SAM ViT-B, "
                    "LiteMedSAM, MobileSAM, EfficientViT-SAM-L0, ESP-MedSAM) on every installed backend, "
                    "precision, thread count and batch; write JSON, CSV, Markdown and plots into "
                    "OUT/<machine>/. Without options: the full run (every preset and anchor).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="CI mode: one thread, a short CT volume, few samples, no anchors (about a minute)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="the full run (default)")
    parser.add_argument("--bundle", type=Path, action="append", default=[], help="a bundle of ours (repeatable)")
    parser.add_argument("--compare-bundle", type=Path, action="append", default=[],
                        help="another bundle to compare ours against, like an anchor (repeatable)")
    parser.add_argument("--preset", action="append",
                        help="a student preset (e.g. lite) exported here with random weights (repeatable; default: all in "
                             "the full run, tiny in --quick, none when --bundle or --model is given)")
    parser.add_argument("--model", type=Path, action="append", default=[], help="a student model file (repeatable)")
    parser.add_argument("--size", type=int, action="append", default=[],
                        help="input size for presets and model files (repeatable; default: native)")
    parser.add_argument("--anchors", type=_csv, help="comma-separated reference names, or 'none' (default: all in "
                                                     "the full run, none in --quick)")
    parser.add_argument("--backends", type=_csv, help="from pytorch,onnxruntime,openvino,tensorrt (default: all)")
    parser.add_argument("--precisions", type=_csv, help="comma-separated: fp32, fp16, int8, bf16 (the FP32 graph "
                        "run in bf16 by OpenVINO where the CPU has bf16 kernels); default: all")
    parser.add_argument("--threads", type=_ints, help="thread counts for ours (default: 1 and all usable cores)")
    parser.add_argument("--anchor-threads", type=_ints, help="thread counts for the anchors (default: all cores)")
    parser.add_argument("--batch", type=_ints, help="objects per decoder call and images per encoder call where the "
                                                    "graph allows (default 1,4)")
    parser.add_argument("--prompts", type=int, help="K of the interactive scenario (encode once + K prompts)")
    parser.add_argument("--ct", type=_volume, help="3D case volume as SLICESxSIDE (default 287x512)")
    parser.add_argument("--ct-boxes", type=int, help="3D boxes of the CT case (default 6)")
    parser.add_argument("--ct-runs", type=int, help="measured 3D runs per variant of ours (default 1)")
    parser.add_argument("--budget", type=float, help="seconds of timed calls per task of ours")
    parser.add_argument("--rounds", type=int, help="interleaved rounds")
    parser.add_argument("--coldstart-runs", type=int, help="process launches per variant of ours (default 3)")
    parser.add_argument("--accuracy-images", type=int, help="held-out synthetic images for Dice per precision")
    parser.add_argument("--out", type=Path, help="results root (default: benchmarks/results)")
    parser.add_argument("--work", type=Path, help="folder for exported bundles and graphs (default: temp dir)")
    parser.add_argument("--note", default="", help="a note on the machine (e.g. 'shared with other jobs')")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--seed", type=int, help="seed of models, images and volumes (default 0)")
    parser.set_defaults(handler=run_bench, mode="full")


def settings_from_args(args: argparse.Namespace) -> Any:
    """The run's settings: the mode's preset with every given option applied."""
    from edge_medsam.benchmark.settings import preset_settings

    given: dict[str, Any] = {"note": args.note, "plots": not args.no_plots, "bundles": args.bundle,
                             "compare_bundles": args.compare_bundle, "model_files": args.model, "sizes": args.size}
    if args.preset is not None:
        given["presets"] = args.preset
    elif args.bundle or args.model:
        given["presets"] = []
    if args.anchors is not None:
        given["anchors"] = [] if args.anchors == ("none",) else list(args.anchors)
    for option, field in (("backends", "backends"), ("precisions", "precisions"), ("threads", "threads"),
                          ("anchor_threads", "anchor_threads"), ("batch", "batches"), ("prompts", "prompts"),
                          ("coldstart_runs", "coldstart_runs"), ("accuracy_images", "accuracy_images"),
                          ("out", "out"), ("work", "work"), ("seed", "seed")):
        if getattr(args, option) is not None:
            given[field] = getattr(args, option)
    settings = preset_settings(args.mode, **given)
    ct = settings.ct
    if args.ct is not None:
        ct = replace(ct, slices=args.ct[0], size=args.ct[1])
    if args.ct_boxes is not None:
        ct = replace(ct, boxes=args.ct_boxes)
    if args.ct_runs is not None:
        ct = replace(ct, runs=args.ct_runs)
    plan = settings.plan
    if args.budget is not None:
        plan = replace(plan, budget_s=args.budget)
    if args.rounds is not None:
        plan = replace(plan, rounds=args.rounds)
    if min(ct.slices, ct.size, ct.boxes, plan.rounds) < 1 or plan.budget_s <= 0:
        raise InputError("--ct, --ct-boxes, --rounds and --budget must be positive", fix="e.g. --ct 287x512 --rounds 5")
    return replace(settings, ct=ct, plan=plan)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print where the results went."""
    settings = settings_from_args(args)  # checked before the heavy imports of the run
    from edge_medsam.benchmark.run import run_benchmark

    folder = run_benchmark(settings)
    print(f"results: {folder}")
    return 0
