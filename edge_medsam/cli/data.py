"""`edge-medsam data ...`: make the synthetic corpus, assemble real scans, inspect files, describe a dataset folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_medsam.modalities import get_modality


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `data` command group."""
    parser = commands.add_parser("data", help="synthetic corpus, file inspection, dataset layouts")
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    synth = sub.add_parser("synth", help="write the synthetic multi-modality corpus (folder-pairs layout)")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--per-modality", type=int, default=20, help="2D images per modality (default 20)")
    synth.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same corpus")
    synth.add_argument("--style-shift", action="store_true",
                       help="same anatomy, other textures/noise (an unseen-domain test set)")
    synth.add_argument("--modalities", default=None, help="comma-separated subset, e.g. ct,mr,fundus (default: all)")
    synth.add_argument("--volumes", type=int, default=2, help="CT NIfTI volumes to write (default 2)")
    synth.set_defaults(handler=run_synth)

    real = sub.add_parser("real", help="assemble real scans from installed packages (pyradiomics sdist, pydicom, "
                                        "pydicom-data, scikit-image) into a dataset folder")
    real.add_argument("--out", type=Path, required=True, help="output folder")
    real.add_argument("--pyradiomics", type=Path, default=None,
                      help="the pyradiomics-3.0.1.tar.gz sdist (default: the material cache, $EDGE_MEDSAM_MATERIAL "
                           "or ~/.cache/edge-medsam/material; fetch it with scripts/fetch_real_material.sh)")
    real.add_argument("--only", choices=("labelled", "unlabelled"), default=None,
                      help="only the labelled volumes (pyradiomics) or only the unlabelled images (default: both)")
    real.add_argument("--frames", type=int, default=3, help="slices taken from each multi-frame DICOM (default 3)")
    real.set_defaults(handler=run_real)

    inspect = sub.add_parser("inspect", help="read files/series and print what a model would see, one line each")
    inspect.add_argument("paths", nargs="+", type=Path, help="images, DICOM files or series folders, NIfTI, npz")
    inspect.add_argument("--json", action="store_true", help="print one JSON object per input")
    inspect.set_defaults(handler=run_inspect)

    layout = sub.add_parser("layout", help="detect a dataset folder's layout and count its samples per modality")
    layout.add_argument("root", type=Path)
    layout.add_argument("--layout", default="auto", help="auto (default), folder_pairs, samed2d, nnunet, medsam_npz")
    layout.add_argument("--modality", default=None, help="modality for layouts that do not say it")
    layout.add_argument("--volumes", action="store_true",
                        help="include a manifest's volumes, one sample per slice (e.g. the labelled real material)")
    layout.add_argument("--verify", action="store_true", help="read every sample and report the unreadable ones")
    layout.set_defaults(handler=run_layout)


def run_synth(args: argparse.Namespace) -> int:
    """Write the corpus and print where its manifest is."""
    from edge_medsam.data.synth import write_corpus

    modalities = None
    if args.modalities:
        modalities = [get_modality(name).name for name in args.modalities.split(",") if name.strip()]
    manifest = write_corpus(args.out, per_modality=args.per_modality, size=args.size, seed=args.seed,
                            style_shift=args.style_shift, modalities=modalities, volumes=args.volumes)
    print(f"corpus written: {manifest}")
    return 0


def run_real(args: argparse.Namespace) -> int:
    """Assemble the real material; print what it holds, per case the slices the dataset reader yields."""
    import json
    from collections import Counter

    from edge_medsam.data.layouts import open_dataset
    from edge_medsam.data.real import write_real

    manifest_path = write_real(args.out, args.pyradiomics, only=args.only, frames=args.frames)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    print(f"real material: {manifest_path}")
    if manifest["volumes"]:
        every = Counter(s.case for s in open_dataset(args.out, include_volumes=True))
        lesion = Counter(s.case for s in open_dataset(args.out, include_volumes=True, foreground_only=True))
        print(f"  labelled volumes (real masks): {len(manifest['volumes'])}, open with include_volumes=True")
        for entry in manifest["volumes"]:
            obj = entry["objects"][0]
            print(f"    {entry['case']:<8} {entry['modality']:<3} {'x'.join(map(str, entry['shape'])):<11} "
                  f"{every[entry['case']]:>3} slices, {lesion[entry['case']]:>2} with {obj['name']} "
                  f"({obj['voxels']} voxels)")
    if manifest["unlabelled"]:
        counts = Counter(e["modality"] for e in manifest["unlabelled"])
        print(f"  unlabelled images: {len(manifest['unlabelled'])} ("
              + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) + ")")
    for source in manifest["sources"]:
        print(f"  source {source['package']} {source['version']} ({source['licence']}): {source['gave']}")
    if manifest["skipped"]:
        print(f"  skipped {len(manifest['skipped'])} files:")
        for item in manifest["skipped"]:
            print(f"    {item['package']} {item['file']}: {item['reason']}")
    return 0


def _read_any(path: Path):
    """An Image2D, or a Volume for folders, zips and 3D files."""
    from edge_medsam.errors import InputError
    from edge_medsam.io import read_image, read_volume

    if path.is_dir() or path.suffix.lower() == ".zip":
        return read_volume(path)
    try:
        return read_image(path)
    except InputError as err:
        if path.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".dcm", ".npz")):
            try:
                return read_volume(path)
            except InputError:
                raise err from None
        raise


def _describe(path: Path, item) -> dict:
    from edge_medsam.io import Volume

    info = {"path": str(path), "kind": "volume" if isinstance(item, Volume) else "image",
            "dtype": str(item.voxels.dtype if isinstance(item, Volume) else item.pixels.dtype),
            "modality": item.modality, "hounsfield": item.hounsfield, "window": item.window}
    if isinstance(item, Volume):
        info.update(shape=list(item.shape), spacing=[round(s, 4) for s in item.spacing])
    else:
        info.update(shape=list(item.pixels.shape), spacing=list(item.spacing) if item.spacing else None)
    return info


def run_inspect(args: argparse.Namespace) -> int:
    """Read each input; print one line (or JSON object) per input; exit 1 if any failed, after trying all."""
    import json

    from edge_medsam.errors import EdgeMedSAMError

    failed = 0
    for path in args.paths:
        try:
            info = _describe(path, _read_any(path))
        except EdgeMedSAMError as err:
            failed += 1
            line = {"path": str(path), "error": str(err)} if args.json else f"error: {err}"
            print(json.dumps(line) if args.json else line, file=sys.stderr if not args.json else sys.stdout)
            continue
        if args.json:
            print(json.dumps(info))
        else:
            extras = [f"modality={info['modality']}"] if info["modality"] else []
            if info["hounsfield"]:
                extras.append("HU")
            if info["window"]:
                extras.append("window={:g}/{:g}".format(*info["window"]))
            if info["spacing"]:
                extras.append("spacing=" + "x".join(f"{s:g}" for s in info["spacing"]))
            shape = "x".join(str(s) for s in info["shape"])
            print(f"{path}: {info['kind']} {shape} {info['dtype']} {' '.join(extras)}".rstrip())
    return 1 if failed else 0


def run_layout(args: argparse.Namespace) -> int:
    """Detect the layout, print counts per modality and what was skipped."""
    from edge_medsam.data.layouts import open_dataset

    dataset = open_dataset(args.root, args.layout, args.modality, include_volumes=args.volumes)
    if args.verify:
        dataset = dataset.verified(progress=True)
    print(dataset.summary())
    return 0
