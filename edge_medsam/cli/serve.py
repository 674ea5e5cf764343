"""`edge-medsam serve`: run the PACS node (``serve run``) and look at its queue (``serve status``)."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.serve.config import load_settings
from edge_medsam.serve.jobs import JobQueue
from edge_medsam.serve.status import queue_status


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `serve` command group."""
    parser = commands.add_parser(
        "serve", help="a PACS node: segment incoming DICOM series and store DICOM-SEG back",
        description="Receive series (DICOM C-STORE, or an Orthanc's change feed), segment them with a bundle on "
                    "the torch-free runtime and store the DICOM-SEGs back. Needs `pip install edge-medsam[serve]`.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run the node until SIGTERM / Ctrl-C")
    run.add_argument("--config", type=Path, required=True, help="the node's YAML config (see the README)")
    run.add_argument("--workers-only", action="store_true",
                     help="no feeders (no C-STORE receiver, no change feed): extra workers on a shared queue")
    run.set_defaults(handler=run_serve)
    status = actions.add_parser("status", help="queue counts, failures with their reasons, throughput")
    status.add_argument("--config", type=Path, required=True)
    status.add_argument("--json", action="store_true", help="print the status as one JSON object")
    status.set_defaults(handler=show_status)


def run_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        from edge_medsam.serve.node import run_node
    except ImportError as err:
        raise EdgeMedSAMError(f"the serve extra is not installed ({err.name} is missing)",
                              fix="pip install 'edge-medsam[serve]'") from err
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_node(settings, stop, feeders=not args.workers_only)
    return 0


def show_status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not settings.queue.is_file():
        raise EdgeMedSAMError("the node's queue does not exist yet", path=settings.queue,
                              fix="start the node with `edge-medsam serve run --config` first, or check queue:")
    status = queue_status(JobQueue(settings.queue))
    if args.json:
        print(json.dumps(status))
        return 0
    print("jobs: " + ", ".join(f"{state} {n}" for state, n in status["counts"].items()))
    throughput = status["throughput"]
    print(f"last hour: {throughput['done_last_hour']} series stored, {throughput['series_per_minute']} per minute, "
          f"median {throughput['median_seconds_received_to_stored']} s from received by the node to stored")
    for item in status["retrying"]:
        print(f"retrying {item['series_uid']} (attempt {item['attempts']}): {item['reason']}")
    for item in status["failures"]:
        print(f"failed {item['series_uid']} after {item['attempts']} attempt(s): {item['reason']}")
    return 0
