"""`edge-medsam demo`: the browser demo (Gradio) on the torch-free runtime, served on this machine by default."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from edge_medsam.cli.predict import _bundle_path
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.runtime.backends import BACKEND_CHOICES
from edge_medsam.runtime.manifest import PRECISIONS

DEMO_FIX = "install the demo with: pip install 'edge-medsam[demo]'"


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `demo` command."""
    parser = commands.add_parser(
        "demo", help="segment your own images in the browser (Gradio; no torch)",
        description="Serve the interactive demo: upload a picture, DICOM (file, series files or zip) or NIfTI, see "
                    "the self-prompted mask at once, refine it with clicks and a box, download PNG/NIfTI/DICOM-SEG.")
    parser.add_argument("--bundle", type=Path, help="bundle folder or .zip (default: the shipped demo bundle)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--device", help="cpu, cuda[:N] (ONNX Runtime / TensorRT); CPU, GPU, NPU, AUTO (OpenVINO)")
    parser.add_argument("--threads", type=int, help="CPU threads per graph (default: the backend's choice)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes "
                                       "the demo, which has no login, to the network)")
    parser.add_argument("--port", type=int, help="port (default: 7860, or the next free one)")
    parser.add_argument("--max-upload-mb", type=float, default=512.0, help="largest upload accepted")
    parser.add_argument("--max-side", type=int, default=4096, help="largest image side in pixels")
    parser.add_argument("--no-examples", action="store_true", help="do not offer the synthetic example images")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Serve the demo until interrupted."""
    missing = [name for name in ("gradio", "gradio_image_annotation") if importlib.util.find_spec(name) is None]
    if missing:
        raise EdgeMedSAMError(f"the demo needs {' and '.join(missing)}, which are not installed", fix=DEMO_FIX)
    bundle = _bundle_path(args)
    if args.max_upload_mb <= 0 or args.max_side < 2:
        raise EdgeMedSAMError("--max-upload-mb must be positive and --max-side at least 2",
                              fix="give e.g. --max-upload-mb 512 --max-side 4096")
    from edge_medsam.apps.demo import serve

    serve(bundle, backend=args.backend, precision=args.precision, host=args.host, port=args.port,
          threads=args.threads, device=args.device, max_upload_mb=args.max_upload_mb, max_side=args.max_side,
          examples=not args.no_examples)
    return 0
