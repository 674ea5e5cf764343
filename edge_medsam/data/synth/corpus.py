"""Write the synthetic corpus to a folder: images and masks in the folder-pairs layout, CT volumes as NIfTI, and
a manifest written last (a folder without manifest.json holds an unfinished run).

Layout::

    DIR/manifest.json
    DIR/images/<modality>/<modality>_<NNNN>.png   CT: 16-bit, stored value - 1024 = HU; colour: RGB; others: grey
    DIR/masks/<modality>/<modality>_<NNNN>.png    label map, 0 = background (16-bit beyond 255 objects)
    DIR/volumes/ct/ct_vol_<NNN>.nii.gz            int16 HU, RAS+ affine
    DIR/volumes/ct/ct_vol_<NNN>_labels.nii.gz     label map on the same grid

Sample ``i`` of a modality depends only on (seed, modality, i): a corpus with more samples per modality or more
modalities contains the smaller one unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from edge_medsam import __version__
from edge_medsam.data.synth.generate import (
    SYNTH_MODALITIES,
    check_size,
    check_slices,
    generate_sample,
    generate_volume,
    synth_modality,
)
from edge_medsam.data.synth.scene import SynthSample
from edge_medsam.errors import InputError
from edge_medsam.io.files import atomic_write, atomic_write_text
from edge_medsam.io.masks import write_mask_png
from edge_medsam.io.types import Volume
from edge_medsam.modalities import MODALITIES, get_modality

FORMAT = "edge-medsam-corpus"
VERSION = 1
HU_OFFSET = -1024  # stored CT value + HU_OFFSET = Hounsfield units
MANIFEST = "manifest.json"

# Spawn-key prefixes that keep 2D samples and volumes on separate random streams.
_SAMPLE_STREAM, _VOLUME_STREAM = 0, 1
_OURS = re.compile(r"^(?:\.tmp-[0-9a-f]+-)?(?:[a-z]+_\d{4,}\.png|ct_vol_\d{3,}(?:_labels)?\.nii\.gz)$")


def write_corpus(out: str | Path, per_modality: int = 20, size: int = 256, seed: int = 0, style_shift: bool = False,
                 modalities: list[str] | None = None, volumes: int = 2, volume_slices: int = 32,
                 progress: bool | None = None) -> Path:
    """Write the synthetic corpus under ``out`` and return the path of its manifest.

    ``modalities``: names or aliases (default: every modality the corpus can draw). ``volumes``: CT volumes of
    ``size`` x ``size`` x ``volume_slices``. ``progress``: show a progress bar (default: only on a terminal).
    A folder that already holds a complete corpus with the same parameters is left as it is; otherwise its
    corpus files are rewritten and files of ours that the new corpus does not list are removed.
    """
    root = Path(out)
    names = list(dict.fromkeys(synth_modality(m).name for m in (modalities or SYNTH_MODALITIES)))
    for what, value in (("seed", seed), ("per-modality count", per_modality), ("volume count", volumes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"{what} {value!r} is not a non-negative integer", fix="use e.g. 0, 20 or 2")
    size, volume_slices = check_size(size), check_slices(volume_slices)
    parameters = {"format": FORMAT, "version": VERSION, "generator": f"edge_medsam.data.synth {__version__}",
                  "seed": int(seed), "size": size, "style_shift": bool(style_shift), "modalities": names,
                  "per_modality": int(per_modality), "volume_slices": volume_slices}
    manifest_path = root / MANIFEST
    if _already_written(manifest_path, parameters, volumes):
        return manifest_path
    if volumes:
        _nifti_writers()  # without nibabel (the runtime extra) fail now, not after writing every image
    if manifest_path.exists():  # from here on the folder holds an unfinished corpus until the new manifest lands
        manifest_path.unlink()

    samples: list[dict[str, Any]] = []
    volume_entries: list[dict[str, Any]] = []
    total = len(names) * per_modality + volumes
    with tqdm(total=total, desc="synthetic corpus", unit="sample", disable=None if progress is None else not progress) as bar:
        for name in names:
            index = get_modality(name).index
            for number in range(per_modality):
                seq = np.random.SeedSequence(int(seed), spawn_key=(_SAMPLE_STREAM, index, number))
                samples.append(_write_sample(root, f"{name}_{number:04d}", generate_sample(name, seq, size,
                                                                                          style_shift)))
                bar.update()
        for number in range(volumes):
            seq = np.random.SeedSequence(int(seed), spawn_key=(_VOLUME_STREAM, number))
            volume_entries.append(_write_volume(root, number, seq, size, volume_slices, style_shift))
            bar.update()

    listed = {entry[key] for entry in samples for key in ("image", "mask")}
    listed |= {entry[key] for entry in volume_entries for key in ("image", "labels")}
    _remove_stale(root, listed)
    text = _manifest_text(parameters, samples, volume_entries)
    return atomic_write_text(manifest_path, text)


def _manifest_text(parameters: dict[str, Any], samples: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> str:
    """The manifest as JSON with one sample or volume per line: readable, and small despite many objects."""
    head = json.dumps(parameters, indent=1)[:-2]
    lists = [f' "{key}": [' + ",".join(f"\n  {json.dumps(entry)}" for entry in entries) + ("\n ]" if entries else "]")
             for key, entries in (("samples", samples), ("volumes", volumes))]
    return head + ",\n" + ",\n".join(lists) + "\n}\n"


def _write_sample(root: Path, stem: str, sample: SynthSample) -> dict[str, Any]:
    image = f"images/{sample.modality}/{stem}.png"
    mask = f"masks/{sample.modality}/{stem}.png"
    pixels = sample.pixels
    if sample.hounsfield:
        pixels = (pixels.astype(np.int32) - HU_OFFSET).astype(np.uint16)
    picture = Image.fromarray(pixels)  # uint16 → 16-bit grey PNG, uint8 → grey or RGB
    atomic_write(root / image, lambda tmp: picture.save(tmp, format="PNG"))
    write_mask_png(root / mask, sample.labels)
    entry: dict[str, Any] = {"id": stem, "modality": sample.modality, "image": image, "mask": mask,
                             "objects": [asdict(obj) for obj in sample.objects]}
    if sample.hounsfield:
        entry["intensity"] = {"units": "HU", "offset": HU_OFFSET}
    return entry


def _write_volume(root: Path, number: int, seq: np.random.SeedSequence, size: int, slices: int,
                  style_shift: bool) -> dict[str, Any]:
    write_nifti, write_nifti_labels = _nifti_writers()
    volume = generate_volume(seq, size, slices, style_shift)
    stem = f"ct_vol_{number:03d}"
    image, labels = f"volumes/ct/{stem}.nii.gz", f"volumes/ct/{stem}_labels.nii.gz"
    write_nifti(root / image, volume.hounsfield, volume.affine)
    write_nifti_labels(root / labels, volume.labels, Volume(volume.hounsfield, volume.affine, hounsfield=True))
    return {"id": stem, "modality": "ct", "image": image, "labels": labels,
            "intensity": {"units": "HU", "offset": 0}, "shape": list(volume.hounsfield.shape),
            "spacing": [round(v, 6) for v in volume.spacing],
            "objects": [{"label": o.label, "name": o.name, "kind": o.kind, "voxels": o.area} for o in volume.objects]}


def _nifti_writers() -> tuple[Any, Any]:
    """The NIfTI writers of edge_medsam.io (they need nibabel, which the base install lacks)."""
    from edge_medsam.io import write_nifti, write_nifti_labels

    return write_nifti, write_nifti_labels


def _already_written(manifest_path: Path, parameters: dict[str, Any], volumes: int) -> bool:
    """Whether the folder holds a finished corpus with these parameters whose listed files all exist."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in parameters.items()):
        return False
    entries = manifest.get("samples", []) + manifest.get("volumes", [])
    if len(manifest.get("volumes", [])) != volumes:
        return False
    root = manifest_path.parent
    return all((root / entry[key]).is_file() for entry in entries for key in ("image", "mask", "labels")
               if key in entry)


def _remove_stale(root: Path, listed: set[str]) -> None:
    """Delete corpus files (by our naming pattern, in our folders) that the new manifest does not list."""
    folders = [root / kind / m.name for kind in ("images", "masks") for m in MODALITIES] + [root / "volumes" / "ct"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and _OURS.match(path.name) and path.relative_to(root).as_posix() not in listed:
                path.unlink()
