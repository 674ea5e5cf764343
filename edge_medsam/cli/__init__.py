"""The `edge-medsam` command: one sub-command group per job, user errors printed as one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edge_medsam import __version__
from edge_medsam.cli import bench, data, demo, evaluate, export, info, predict, serve, train
from edge_medsam.errors import EdgeMedSAMError

COMMAND_GROUPS = (data, train, evaluate, export, predict, serve, demo, bench, info)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="edge-medsam",
        description="Distil, compress, export and run medical segment-anything models on CPUs and Jetson boards.",
    )
    parser.add_argument("--version", action="version", version=f"edge-medsam {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EdgeMedSAMError as err:
        print(f"edge-medsam: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-medsam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
