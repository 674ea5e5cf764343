"""`edge-medsam modalities`: the modality registry and CT window presets."""

from __future__ import annotations

import argparse
import json

from edge_medsam.modalities import CT_WINDOWS, MODALITIES


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `modalities` command."""
    parser = commands.add_parser("modalities", help="list the modalities (index, name, intensity handling)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run_modalities)


def run_modalities(args: argparse.Namespace) -> int:
    """Print the registry."""
    if args.json:
        rows = [{"index": m.index, "name": m.name, "title": m.title, "intensity": m.intensity.value,
                 "colour": m.colour, "aliases": list(m.aliases), "dicom": list(m.dicom_codes)} for m in MODALITIES]
        print(json.dumps({"modalities": rows, "ct_windows": CT_WINDOWS}, indent=2))
        return 0
    print(f"{'idx':>3}  {'name':<12} {'intensity':<11} aliases")
    for m in MODALITIES:
        print(f"{m.index:>3}  {m.name:<12} {m.intensity.value:<11} {', '.join(m.aliases)}")
    print("CT windows (centre/width HU): " + ", ".join(f"{k} {c:g}/{w:g}" for k, (c, w) in CT_WINDOWS.items()))
    return 0
