"""`edge-medsam export`: a trained student → a verified model bundle (ONNX / OpenVINO; FP32, FP16, INT8)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_medsam.runtime.manifest import GRAPH_FORMATS, PRECISIONS


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `export` command."""
    parser = commands.add_parser(
        "export", help="export a trained student into a model bundle (ONNX, OpenVINO; FP32, FP16, INT8)",
        description="Export the two graphs (encoder, decoder), check them against PyTorch on held-out images "
                    "(FP32 must match or nothing is written), derive FP16 and INT8 variants, measure them, and "
                    "write the bundle folder (manifest.json + graphs with sha256) atomically.")
    parser.add_argument("--checkpoint", type=Path, required=True, help="student model file (student.pt)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (an older bundle is replaced)")
    parser.add_argument("--calib", type=Path, required=True,
                        help="dataset with masks (any supported layout) for calibration and held-out checks")
    parser.add_argument("--formats", type=_csv, default=GRAPH_FORMATS,
                        help=f"comma-separated, from {','.join(GRAPH_FORMATS)} (default: all)")
    parser.add_argument("--precision", type=_csv, default=PRECISIONS,
                        help=f"comma-separated, from {','.join(PRECISIONS)} (default: all; fp32 is always made)")
    parser.add_argument("--calib-count", type=int, default=64, help="calibration images (default 64)")
    parser.add_argument("--eval-count", type=int, default=32,
                        help="held-out images for parity and Dice (default 32; also the validation size)")
    parser.add_argument("--max-dice-drop", type=float, default=None,
                        help="keep INT8 per graph only where Dice on validation images drops by at most this "
                             "(e.g. 0.02); otherwise try mixed precision, then keep FP32")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration/held-out split and prompts")
    parser.add_argument("--zip", action="store_true", help="also write BUNDLE.zip next to the folder")
    parser.add_argument("--json", action="store_true", help="print the manifest's metrics as JSON at the end")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export and print where the bundle went, its variants with sizes, and the Dice drop per precision."""
    from edge_medsam.compress.pipeline import ExportSettings, export_bundle

    settings = ExportSettings(formats=args.formats, precision=args.precision, calib_count=args.calib_count,
                              eval_count=args.eval_count, max_dice_drop=args.max_dice_drop, zip=args.zip,
                              seed=args.seed)
    report = export_bundle(args.checkpoint, args.out, args.calib, settings,
                           log=lambda line: print(line, file=sys.stderr, flush=True))
    manifest = report.manifest
    if args.json:
        print(json.dumps(manifest.metrics, indent=2))
        return 0
    print(f"bundle: {report.bundle}" + (f" (zip: {report.archive})" if report.archive else ""))
    for variant in manifest.variants:
        size = sum(f.bytes for f in variant.files) / 1e6
        print(f"  {variant.format:<9} {variant.precision:<5} {variant.graph:<8} {size:7.2f} MB  {variant.main}")
    reference = manifest.metrics["reference"]["dice"]
    print(f"Dice (PyTorch FP32, held-out): box {reference['box']:.4f}, self-prompt {reference['self_prompt']:.4f}")
    for fmt, per_precision in manifest.metrics["dice_drop"].items():
        for precision, drop in per_precision.items():
            print(f"  Dice drop {fmt} {precision}: box {drop['box']:+.4f}, self-prompt {drop['self_prompt']:+.4f}")
    return 0
