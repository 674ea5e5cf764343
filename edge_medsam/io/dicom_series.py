"""A DICOM series from a folder, a zip of one or DICOMDIR media → Volume, sorted in space, with its RAS affine."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from edge_medsam.errors import InputError
from edge_medsam.io.dicom import (
    DICOM_ERRORS,
    Frame,
    check_image_dataset,
    decode,
    dicom_errors,
    dicom_modality,
    dicom_source,
    drop_pixels,
    frame_attributes,
    number_of_frames,
    pixel_values,
    read_dataset,
    read_dicom_file_volume,
    volume_from_frames,
)
from edge_medsam.io.dicom_header import drop_malformed
from edge_medsam.io.files import PathLike, check_voxels, existing_file, resolve_limits
from edge_medsam.io.gzipped import dicom_marked
from edge_medsam.io.types import ReadLimits, Volume
from edge_medsam.io.zips import extract_zip

MAX_FILES = 100_000
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_FOLDER_FIX = "give the folder that holds the .dcm files of one series (or a zip of it)"
PICK_SERIES_FIX = "pick one with --series SeriesInstanceUID or SeriesNumber (in Python: read_volume(path, series=...))"


def _candidates(folder: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(Path(root) / n for n in sorted(names))
        if len(files) > MAX_FILES:
            raise InputError(f"holds more than {MAX_FILES} files", path=folder, fix=_FOLDER_FIX)
    return files


def _dicomdir(folder: Path) -> Path | None:
    """The folder's DICOMDIR file, if it is DICOM media."""
    return next((p for p in sorted(folder.iterdir()) if p.name.upper() == "DICOMDIR" and p.is_file()), None)


def _referenced(dicomdir: Path) -> list[Path]:
    """The files a DICOMDIR's records reference (pydicom warns of, and drops, those missing)."""
    try:
        return [Path(instance.path) for instance in FileSet(dicomdir)]
    except DICOM_ERRORS as err:
        raise InputError(f"the DICOMDIR cannot be read ({type(err).__name__}: {err})", path=dicomdir,
                         fix="give the folder of one series instead") from err


def _header(file: Path, limits: ReadLimits) -> Dataset | None:
    """The header of a DICOM image file, or None for anything else (other files in the folder are ignored)."""
    marked = False
    try:
        marked = dicom_marked(file)
        if not marked and file.suffix.lower() not in _DICOM_SUFFIXES:
            return None
        ds = pydicom.dcmread(dicom_source(file, limits), stop_before_pixels=True, force=not marked)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reading the chosen series' files repeats them
            drop_malformed(ds, file)
        if "Rows" not in ds or "Columns" not in ds or str(ds.get("Modality", "")).upper() in ("SEG", "RTSTRUCT"):
            return None
        return ds
    except DICOM_ERRORS as err:
        if marked:
            reason = err.problem if isinstance(err, InputError) else "the DICOM header cannot be read"
            warnings.warn(f"{file}: skipped, {reason}", stacklevel=4)
        return None


def _describe(uid: str, members: list[tuple[Path, Dataset]]) -> dict[str, Any]:
    ds = members[0][1]
    number = ds.get("SeriesNumber")
    return {"series_instance_uid": uid, "series_number": None if number in (None, "") else int(number),
            "images": len(members), "modality": str(ds.get("Modality", "")),
            "description": str(ds.get("SeriesDescription", ""))}


def _listing(series: list[dict[str, Any]]) -> str:
    return "; ".join(f"{s['series_instance_uid']} (number {'-' if s['series_number'] is None else s['series_number']}"
                     f", {s['modality']} {s['description']!r}, {s['images']} images)" for s in series)


def _named(described: dict[str, Any], name: str | None) -> bool:
    """True if ``name`` is None or the series' UID or number."""
    number = described["series_number"]
    return name in (None, described["series_instance_uid"]) or (number is not None and name == str(number))


def _choose_series(groups: dict[str, list[tuple[Path, Dataset]]], series: str | None, folder: str
                   ) -> tuple[str, list[dict[str, Any]]]:
    """The SeriesInstanceUID of the series ``series`` names (its UID or SeriesNumber), or of the only one there."""
    found = sorted((_describe(uid, m) for uid, m in groups.items()),
                   key=lambda d: (d["series_number"] is None, d["series_number"] or 0, d["series_instance_uid"]))
    wanted = None if series is None else series.strip()
    chosen = [d for d in found if _named(d, wanted)]
    if len(chosen) == 1:
        return chosen[0]["series_instance_uid"], [d for d in found if d is not chosen[0]]
    if not chosen:
        raise InputError(f"holds no series {wanted!r}; it holds {len(found)}: {_listing(found)}", path=folder,
                         fix=PICK_SERIES_FIX)
    if wanted is None:
        raise InputError(f"holds {len(found)} series: {_listing(found)}", path=folder, fix=PICK_SERIES_FIX)
    raise InputError(f"{len(chosen)} series have the number {wanted}: {_listing(chosen)}", path=folder,
                     fix="pick one by its SeriesInstanceUID")


def _check_uniform(members: list[tuple[Path, Dataset]], label: Callable[[Path], str], shown: str) -> None:
    sizes: dict[tuple[int, int, int], list[Path]] = defaultdict(list)
    for file, ds in members:
        sizes[(int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel") or 1))].append(file)
    if len(sizes) > 1:
        listed = ", ".join(f"{c}x{r}x{s} ({len(f)} files, e.g. {Path(label(f[0])).name})"
                           for (r, c, s), f in sizes.items())
        raise InputError(f"the series mixes image sizes: {listed}", path=shown,
                         fix="give a folder that holds one series of same-sized images")


def _read_series(folder: Path, limits: ReadLimits, series: str | None, label: Callable[[Path], str],
                 shown: str) -> Volume:
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    dicomdir = _dicomdir(folder)
    files = _referenced(dicomdir) if dicomdir else _candidates(folder)
    for file in files:
        header = _header(file, limits)
        if header is not None:
            groups[str(header.get("SeriesInstanceUID", ""))].append((file, header))
    if not groups:
        raise InputError(f"holds no DICOM images ({len(files)} files looked at)", path=shown, fix=_FOLDER_FIX)
    chosen, others = _choose_series(groups, series, shown)
    members = groups[chosen]
    if any(number_of_frames(ds) > 1 for _, ds in members):
        if len(members) == 1:
            volume = read_dicom_file_volume(members[0][0], limits)
            volume.meta["other_series"] = others
            return volume
        raise InputError(f"the series is split over {len(members)} multi-frame files", path=shown,
                         fix="read one multi-frame file at a time with read_volume")
    _check_uniform(members, label, shown)
    rows, cols = int(members[0][1].Rows), int(members[0][1].Columns)
    limits.check_2d(rows, cols, shown)
    check_voxels((cols, rows, len(members)), limits, shown)
    datasets: list[Dataset] = []
    frames: list[Frame] = []
    for file, _ in members:
        ds = read_dataset(file, limits)
        with dicom_errors(label(file)):
            check_image_dataset(ds, label(file))
            frames.append(pixel_values(decode(ds, label(file)), ds, frame_attributes(ds, 0)))
        datasets.append(drop_pixels(ds))
    numbers = [int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None for ds in datasets]
    with dicom_errors(shown):
        voxels, affine, window, meta, order = volume_from_frames(frames, datasets, numbers, shown)
    first = datasets[order[0]]
    modality, hounsfield, code = dicom_modality(first)
    meta.update({"format": "dicom", "dicom_modality": code, "series_instance_uid": chosen,
                 "series_description": str(first.get("SeriesDescription", "")), "other_series": others,
                 "files": [os.path.relpath(members[i][0], folder) for i in order]})
    return Volume(voxels=voxels, affine=affine, path=Path(shown), modality=modality, hounsfield=hounsfield,
                  window=window, source=[datasets[i] for i in order], meta=meta)


def read_dicom_series(folder: PathLike, limits: ReadLimits | None = None, *, series: str | None = None) -> Volume:
    """Read the DICOM series in ``folder`` as a Volume: the files its DICOMDIR references (``folder`` may be the
    DICOMDIR itself), else the files found recursively (other files ignored).

    Where several series are there, ``series`` (a SeriesInstanceUID or SeriesNumber) picks one; without it the
    InputError lists them. ``source`` holds the sorted datasets without their pixel data (for DICOM-SEG).
    """
    root = Path(folder)
    if root.name.upper() == "DICOMDIR" and root.is_file():
        root = root.parent
    if not root.is_dir():
        raise InputError("is not a folder", path=root, fix=_FOLDER_FIX)
    return _read_series(root, resolve_limits(limits), series, str, str(root))


def read_dicom_zip(path: PathLike, limits: ReadLimits | None = None, *, series: str | None = None) -> Volume:
    """Read a DICOM series from a zip archive (extracted safely to a temporary folder) as a Volume."""
    archive = existing_file(path)
    limits = resolve_limits(limits)
    with tempfile.TemporaryDirectory(prefix="edge-medsam-") as tmp:
        folder = Path(tmp)
        # Pixel data takes 2-4 bytes a voxel; the rest allows for headers and files that are not images.
        extract_zip(archive, folder, max_bytes=8 * limits.max_voxels + (1 << 20), max_members=MAX_FILES)

        def label(file: Path) -> str:
            return f"{archive}/{file.relative_to(folder).as_posix()}"

        volume = _read_series(folder, limits, series, label, str(archive))
    volume.path = archive
    return volume
