"""Real scans from installed registry packages, assembled into a dataset folder (``edge-medsam data real``).

Labelled: the five CT/MR cases with real lesion masks in pyradiomics' source distribution (its wheels carry no
data; ``scripts/fetch_real_material.sh`` puts the sdist in the material cache). Unlabelled, for distillation (a
teacher labels them): DICOM test images of pydicom and pydicom-data, fundus and microscopy pictures of
scikit-image. Everything is read with ``edge_medsam.io``, so what a reader refuses is reported, not copied.

Layout (the manifest layout of ``open_dataset``; the labelled volumes open with ``include_volumes=True``)::

    DIR/manifest.json                      written last; "format": "edge-medsam-real"
    DIR/volumes/<case>.nii.gz              int16 (CT in HU), RAS+ affine from the NRRD geometry
    DIR/volumes/<case>_labels.nii.gz       the real mask on the same grid (1 = lesion/tumour)
    DIR/images/<modality>/<id>.png         unlabelled; CT 16-bit with stored value + offset = HU

The manifest lists the volumes under "volumes" and the 2D images under "unlabelled" (read by
``unlabelled_samples``), leaves "samples" empty, and records every source (package, version, licence) and
every file it left out with the reason ("skipped").
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from edge_medsam.data.layouts import Sample, through_plane_axis
from edge_medsam.data.synth.corpus import HU_OFFSET
from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io.files import atomic_write, atomic_write_text, cache_root
from edge_medsam.io.types import Image2D, Volume
from edge_medsam.modalities import get_modality
from edge_medsam.versions import NOT_INSTALLED, installed_versions

FORMAT = "edge-medsam-real"
VERSION = 1
MANIFEST = "manifest.json"
MATERIAL_ENV = "EDGE_MEDSAM_MATERIAL"
FETCH_FIX = "run: bash scripts/fetch_real_material.sh (or pass --pyradiomics PATH to the .tar.gz)"
PYRADIOMICS_SDIST = "pyradiomics-3.0.1.tar.gz"
PYRADIOMICS_SHA256 = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
# case → (modality, name of label 1); the labels are pyradiomics' (one lesion per case).
PYRADIOMICS_CASES = {"brain1": ("mr", "tumour"), "brain2": ("mr", "lesion"), "breast1": ("mr", "lesion"),
                     "lung1": ("ct", "lesion"), "lung2": ("ct", "tumour")}
_MEMBER = re.compile(r"^pyradiomics-(?P<version>[^/]+)/data/(?P<case>[a-z]+\d)_(?P<kind>image|label)\.nrrd$")
_MAX_MEMBER = 512 * 1024 * 1024
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


@dataclass(frozen=True)
class Unlabelled:
    """One file of a package to take as unlabelled images.

    ``modality`` applies where the file does not say; ``copy_of`` names a larger copy of the same pictures in
    another package, taken instead when it is there (so no image appears twice, as two cases).
    """

    package: str
    name: str
    modality: str
    copy_of: str | None = None


# pydicom's get_testdata_file finds both packages' files; "package" is where each one is expected.
DICOM_FILES = (
    Unlabelled("pydicom", "CT_small.dcm", "ct"),
    Unlabelled("pydicom", "MR_small.dcm", "mr"),
    Unlabelled("pydicom", "examples_rgb_color.dcm", "ultrasound", copy_of="US1_UNCR.dcm"),
    Unlabelled("pydicom", "examples_ybr_color.dcm", "ultrasound", copy_of="color3d_jpeg_baseline.dcm"),  # 30 frames
    Unlabelled("pydicom-data", "693_UNCR.dcm", "ct"),
    Unlabelled("pydicom-data", "eCT_Supplemental.dcm", "ct"),  # enhanced CT, 2 frames
    Unlabelled("pydicom-data", "MR2_UNCR.dcm", "mr"),
    Unlabelled("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm", "mr"),
    Unlabelled("pydicom-data", "emri_small.dcm", "mr"),  # enhanced MR, 10 frames
    Unlabelled("pydicom-data", "RG1_UNCR.dcm", "xray"),  # CR chest, MONOCHROME1
    Unlabelled("pydicom-data", "RG3_UNCR.dcm", "xray"),  # CR extremity
    Unlabelled("pydicom-data", "US1_UNCR.dcm", "ultrasound"),
    Unlabelled("pydicom-data", "gdcm-US-ALOKA-16.dcm", "ultrasound"),
    Unlabelled("pydicom-data", "OBXXXX1A.dcm", "ultrasound"),
    Unlabelled("pydicom-data", "color3d_jpeg_baseline.dcm", "ultrasound"),  # 120-frame cine
    Unlabelled("pydicom-data", "JPGLosslessP14SV1_1s_1f_8b.dcm", "ultrasound"),  # needs a JPEG Lossless decoder
)
SKIMAGE_FILES = (
    Unlabelled("scikit-image", "retina.jpg", "fundus"),  # CC0 (Häggström, Wikimedia)
    Unlabelled("scikit-image", "microaneurysms.png", "fundus"),  # CC0 (HRF database), green channel
    Unlabelled("scikit-image", "ihc.png", "microscopy"),  # IHC stained colonic glands
    Unlabelled("scikit-image", "cell.png", "microscopy"),  # CC0 quantitative phase image
)
LICENCES = {"pyradiomics": "BSD-3-Clause", "pydicom": "MIT", "pydicom-data": "MIT", "scikit-image": "BSD-3-Clause"}
INSTALL = {"pydicom": "pip install 'edge-medsam[runtime]'", "pydicom-data": "pip install 'edge-medsam[real]'",
           "scikit-image": "pip install 'edge-medsam[real]'"}


def material_dir() -> Path:
    """The material cache: $EDGE_MEDSAM_MATERIAL, default the ``material`` folder of the user cache."""
    return Path(os.environ.get(MATERIAL_ENV) or cache_root() / "material")


def find_pyradiomics(path: str | os.PathLike[str] | None = None) -> Path:
    """The pyradiomics sdist: ``path`` if given, else the one in the material cache; InputError naming the fix."""
    candidate = Path(path) if path is not None else material_dir() / PYRADIOMICS_SDIST
    if not candidate.is_file():
        where = "at the path given" if path is not None else f"in the material cache ({MATERIAL_ENV})"
        raise InputError(f"the pyradiomics source distribution ({PYRADIOMICS_SDIST}) is not {where}",
                         path=candidate, fix=FETCH_FIX)
    return candidate


# ---------------------------------------------------------------------------------------------------- labelled


def _unsafe(name: str) -> bool:
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in re.split(r"[/\\]", name)


@contextmanager
def extract_pyradiomics(tarball: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    """Extract only the case volumes to a temporary folder: yield (version, {"<case>_<image|label>": path}).

    Refuses archives with absolute or ``..`` member names or links pointing out, and case members that are not
    regular files; members are written under names of our own, never under the archive's paths.
    """
    found: dict[str, Path] = {}
    versions: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="edge-medsam-real-") as scratch:
        try:
            with tarfile.open(tarball, "r|*") as archive:
                for member in archive:
                    if _unsafe(member.name) or ((member.issym() or member.islnk()) and _unsafe(member.linkname)):
                        raise InputError(f"the archive holds an unsafe member {member.name!r} (a path out of the "
                                         "archive); it is refused", path=tarball,
                                         fix=f"delete it and download the original again: {FETCH_FIX}")
                    match = _MEMBER.match(member.name)
                    if match is None or match["case"] not in PYRADIOMICS_CASES:
                        continue
                    if not member.isfile() or member.size > _MAX_MEMBER:
                        raise InputError(f"archive member {member.name} is not a regular file of a sensible size",
                                         path=tarball, fix=f"delete it and download the original again: {FETCH_FIX}")
                    key = f"{match['case']}_{match['kind']}"
                    source = archive.extractfile(member)
                    target = Path(scratch) / f"{key}.nrrd"
                    target.write_bytes(source.read() if source is not None else b"")
                    found[key] = target
                    versions.add(match["version"])
        except _TAR_ERRORS as err:
            raise InputError(f"cannot read the archive: {err}", path=tarball,
                             fix=f"it is damaged or incomplete; delete it and {FETCH_FIX}") from err
        missing = [f"{case}_{kind}" for case in PYRADIOMICS_CASES for kind in ("image", "label")
                   if f"{case}_{kind}" not in found]
        if missing or len(versions) != 1:
            what = f"lacks pyradiomics-*/data/{missing[0]}.nrrd" if missing else "mixes several pyradiomics versions"
            raise InputError(f"the archive {what}", path=tarball, fix=f"give the pyradiomics sdist; {FETCH_FIX}")
        yield versions.pop(), found


def _same_grid(image: Volume, labels: Volume) -> bool:
    return image.shape == labels.shape and bool(np.allclose(image.affine, labels.affine, atol=1e-3))


def _as_int16(volume: Volume, where: str) -> np.ndarray:
    voxels = volume.voxels
    if voxels.dtype != np.int16:
        if not (np.array_equal(voxels, np.round(voxels)) and voxels.min() >= -32768 and voxels.max() <= 32767):
            raise InputError(f"image voxels of type {voxels.dtype} do not fit int16", path=where,
                             fix="give the pyradiomics sample data (int16)")
        voxels = voxels.astype(np.int16)
    return voxels


def _write_case(root: Path, case: str, files: dict[str, Path], version: str, tarball: Path) -> dict[str, Any]:
    """Read one case's NRRD pair with the project's reader, check the grid, write it as NIfTI; its manifest entry."""
    from edge_medsam.io import read_volume, write_nifti, write_nifti_labels

    modality, name = PYRADIOMICS_CASES[case]
    members = {kind: f"pyradiomics-{version}/data/{case}_{kind}.nrrd" for kind in ("image", "label")}
    volumes = {}
    for kind, member in members.items():
        try:
            volumes[kind] = read_volume(files[f"{case}_{kind}"])
        except EdgeMedSAMError as err:
            raise err.with_path(f"{tarball}:{member}") from err
    image, labels = volumes["image"], volumes["label"]
    if not _same_grid(image, labels):
        raise InputError(f"the label {members['label']} ({labels.shape}) is not on the grid of the image "
                         f"({image.shape})", path=tarball, fix="give the original pyradiomics sample data")
    voxels = _as_int16(image, f"{tarball}:{members['image']}")
    mask = (labels.voxels > 0).astype(np.uint8)
    axis = through_plane_axis(image.affine, image.shape)
    labelled = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    paths = {"image": f"volumes/{case}.nii.gz", "labels": f"volumes/{case}_labels.nii.gz"}
    write_nifti(root / paths["image"], voxels, image.affine)
    write_nifti_labels(root / paths["labels"], mask, Volume(voxels, image.affine))
    entry: dict[str, Any] = {"id": case, "case": case, "modality": modality, **paths}
    if modality == "ct":
        entry["intensity"] = {"units": "HU", "offset": 0}
    entry.update(shape=list(image.shape), spacing=[round(v, 6) for v in image.spacing], masks="real",
                 objects=[{"label": 1, "name": name, "voxels": int(mask.sum()), "slices": len(labelled)}],
                 labelled_slices=[int(i) for i in labelled],
                 source={"package": "pyradiomics", "version": version, "licence": LICENCES["pyradiomics"],
                         "file": members["image"], "labels_file": members["label"]})
    return entry


# ---------------------------------------------------------------------------------------------------- unlabelled


def _version(package: str) -> str | None:
    found = installed_versions([package])[package]
    return None if found == NOT_INSTALLED else found


def _require(package: str, module: str) -> str:
    version = _version(package)
    if version is None or importlib.util.find_spec(module) is None:
        raise InputError(f"the package {package!r} is not installed (it holds real images)",
                         fix=f"{INSTALL[package]}, or leave these images out with --only labelled")
    return version


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]).resolve() if locations else None


def _locate(item: Unlabelled) -> tuple[Path | None, str]:
    """The installed file for ``item`` (None and the reason when its package lacks it)."""
    if item.package == "scikit-image":
        folder = _package_dir("skimage")
        path = folder / "data" / item.name if folder is not None else None
        return (path, "") if path is not None and path.is_file() else (None, "not in this scikit-image's skimage/data/")
    if item.package == "pydicom-data" and _version("pydicom-data") is None:
        return None, f"pydicom-data is not installed ({INSTALL['pydicom-data']})"
    from pydicom.data import get_testdata_file

    found = get_testdata_file(item.name, download=False)  # never from the network
    if found is None:
        return None, f"{item.package} {_version(item.package)} has no file of this name"
    path = Path(str(found)).resolve()
    home = _package_dir("pydicom" if item.package == "pydicom" else "data_store")
    if home is None or home not in path.parents:
        return None, f"found at {path}, outside the installed {item.package} package"
    return path, ""


def _read(path: Path) -> Image2D | Volume:
    """An Image2D for single images, a Volume for multi-frame DICOM (the project's readers throughout)."""
    from edge_medsam.io import read_image, read_volume
    from edge_medsam.io.files import optional_module, sniff_format

    if sniff_format(path) == "dicom":
        dicom = optional_module("dicom")
        if dicom.number_of_frames(dicom.read_dataset(path)) > 1:
            return read_volume(path)
    return read_image(path)


def _frames(volume: Volume, count: int) -> list[Image2D]:
    from edge_medsam.io import slice_volume

    axis = through_plane_axis(volume.affine, volume.shape)
    size = volume.shape[axis]
    picks = np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))
    return [slice_volume(volume, axis, int(i)) for i in picks]


def _png_pixels(image: Image2D, modality: str) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Pixels a PNG can hold, and the intensity mapping back to the file's values (None: stored as read)."""
    pixels = np.asarray(image.pixels)
    if modality == "ct" and image.hounsfield:
        return np.clip(np.round(pixels - HU_OFFSET), 0, 65535).astype(np.uint16), {"units": "HU", "offset": HU_OFFSET}
    if pixels.ndim == 3:  # colour: 8 bits per channel (Pillow writes no 16-bit RGB)
        if pixels.dtype == np.uint8:
            return pixels[..., :3], None
        scale = 257.0 if pixels.max() > 255 else 1.0
        return np.clip(np.round(pixels[..., :3] / scale), 0, 255).astype(np.uint8), (
            {"units": "rescaled", "scale": scale, "offset": 0.0} if scale != 1.0 else None)
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels, None
    low, high = float(pixels.min()), float(pixels.max())
    if np.array_equal(pixels, np.round(pixels)) and high - low <= 65535:
        offset = min(low, 0.0)
        return (pixels - offset).astype(np.uint16), ({"units": "rescaled", "scale": 1.0, "offset": offset}
                                                     if offset else None)
    scale = (high - low) / 65535.0 or 1.0
    return np.round((pixels - low) / scale).astype(np.uint16), {"units": "rescaled", "scale": scale, "offset": low}


def _write_png(root: Path, relative: str, pixels: np.ndarray) -> None:
    picture = Image.fromarray(np.ascontiguousarray(pixels))
    atomic_write(root / relative, lambda tmp: picture.save(tmp, format="PNG"))


def _unlabelled_entries(root: Path, item: Unlabelled, path: Path, frames: int) -> list[dict[str, Any]]:
    read = _read(path)
    images = _frames(read, frames) if isinstance(read, Volume) else [read]
    modality = get_modality(read.modality or item.modality).name
    short = "skimage" if item.package == "scikit-image" else item.package
    case = f"{short}-{Path(item.name).stem}"
    source = {"package": item.package, "version": _version(item.package), "licence": LICENCES[item.package],
              "file": item.name}
    entries = []
    for image in images:
        where = image.meta.get("slice")
        sample_id = case if where is None else f"{case}--{'xyz'[where['axis']]}_{where['index']:04d}"
        pixels, intensity = _png_pixels(image, modality)
        relative = f"images/{modality}/{sample_id}.png"
        _write_png(root, relative, pixels)
        entry: dict[str, Any] = {"id": sample_id, "modality": modality, "image": relative, "case": case}
        if intensity is not None:
            entry["intensity"] = intensity
        entry["shape"] = list(pixels.shape)
        if where is not None:
            entry["frame"] = where["index"]
        entry["source"] = source
        entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------------- assembly


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(manifest_path: Path) -> Any:
    try:
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _complete(manifest: Any, root: Path, parameters: dict[str, Any]) -> bool:
    if not isinstance(manifest, dict) or manifest.get("parameters") != parameters:
        return False
    entries = manifest.get("volumes", []) + manifest.get("unlabelled", [])
    return all((root / entry[key]).is_file() for entry in entries for key in ("image", "labels") if key in entry)


def _manifest_text(head: dict[str, Any], lists: dict[str, list[dict[str, Any]]]) -> str:
    """JSON with one entry per line, like the synthetic corpus' manifest."""
    text = json.dumps(head, indent=1)[:-2]
    parts = [f' "{key}": [' + ",".join(f"\n  {json.dumps(entry)}" for entry in entries) + ("\n ]" if entries else "]")
             for key, entries in lists.items()]
    return text + ",\n" + ",\n".join(parts) + "\n}\n"


def write_real(out: str | os.PathLike[str], pyradiomics: str | os.PathLike[str] | None = None, *,
               only: str | None = None, frames: int = 3, progress: bool | None = None) -> Path:
    """Assemble the real material under ``out`` and return its manifest (a complete folder is left as it is).

    ``only``: "labelled" (pyradiomics) or "unlabelled" (pydicom, pydicom-data, scikit-image); default both.
    ``frames``: slices taken from each multi-frame DICOM. Raises InputError for a missing package or sdist.
    """
    if only not in (None, "labelled", "unlabelled"):
        raise InputError(f"unknown selection {only!r}", fix="use --only labelled or --only unlabelled")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames {frames!r} is not a positive integer", fix="use e.g. --frames 3")
    root = Path(out)
    manifest_path = root / MANIFEST
    existing = _load(manifest_path) if manifest_path.exists() else None
    if manifest_path.exists() and (not isinstance(existing, dict) or existing.get("format") != FORMAT):
        raise InputError("the folder already holds another dataset's manifest.json", path=manifest_path,
                         fix="choose an empty folder for the real material")
    labelled, unlabelled = only != "unlabelled", only != "labelled"
    try:
        tarball = find_pyradiomics(pyradiomics) if labelled else None
    except InputError as err:
        if only is not None:
            raise
        raise InputError(err.problem, path=err.path, fix=f"{err.fix}; or take the unlabelled images alone with "
                                                         "--only unlabelled") from None
    versions = {"pydicom": _require("pydicom", "pydicom"), "pydicom-data": _version("pydicom-data"),
                "scikit-image": _require("scikit-image", "skimage")} if unlabelled else {}
    parameters: dict[str, Any] = {"only": only, "frames": frames, "packages": versions}
    if tarball is not None:
        parameters["pyradiomics"] = {"file": tarball.name, "size": tarball.stat().st_size, "sha256": _sha256(tarball)}
    if _complete(existing, root, parameters):
        return manifest_path
    if manifest_path.exists():  # from here on the folder is unfinished until the new manifest lands
        manifest_path.unlink()

    volumes: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    # Files that have a larger copy elsewhere go last, so that the copy is known to be written or not.
    items = sorted([*DICOM_FILES, *SKIMAGE_FILES], key=lambda i: i.copy_of is not None) if unlabelled else []
    written: set[str] = set()
    with tqdm(total=(len(PYRADIOMICS_CASES) if labelled else 0) + len(items), desc="real material", unit="file",
              disable=None if progress is None else not progress) as bar:
        if tarball is not None:
            with extract_pyradiomics(tarball) as (version, files):
                for case in PYRADIOMICS_CASES:
                    volumes.append(_write_case(root, case, files, version, tarball))
                    bar.update()
            digest = parameters["pyradiomics"]["sha256"]
            sources.append({"package": "pyradiomics", "version": version, "licence": LICENCES["pyradiomics"],
                            "file": tarball.name, "sha256": digest, "verified": digest == PYRADIOMICS_SHA256,
                            "gave": f"{len(volumes)} labelled volumes (real lesion masks): "
                                    + ", ".join(f"{v['case']} ({v['modality']})" for v in volumes)})
        for item in items:
            path, reason = _locate(item)
            if item.copy_of in written:
                path, reason = None, f"a smaller copy of {item.copy_of}, which is taken instead"
            if path is not None:
                try:
                    images += _unlabelled_entries(root, item, path, frames)
                    written.add(item.name)
                except EdgeMedSAMError as err:
                    reason = str(err)
            if reason:
                skipped.append({"package": item.package, "file": item.name, "reason": reason})
            bar.update()
    for package in versions:
        given = [e for e in images if e["source"]["package"] == package]
        modalities = sorted({e["modality"] for e in given})
        gave = f"{len(given)} unlabelled images ({', '.join(modalities) or 'none'})" if versions[package] else \
            f"nothing: not installed ({INSTALL[package]})"
        sources.append({"package": package, "version": versions[package], "licence": LICENCES[package], "gave": gave})
    head = {"format": FORMAT, "version": VERSION, "parameters": parameters, "sources": sources}
    text = _manifest_text(head, {"samples": [], "volumes": volumes, "unlabelled": images, "skipped": skipped})
    return atomic_write_text(manifest_path, text)


def unlabelled_samples(root: str | os.PathLike[str]) -> list[Sample]:
    """The manifest's unlabelled images as Samples without masks (``load_sample`` gives CT in HU)."""
    from edge_medsam.data.layouts import _offset

    base = Path(root)
    manifest = _load(base / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError("no real-material manifest here", path=base / MANIFEST,
                         fix="write one with: edge-medsam data real --out DIR")
    return [Sample(id=str(e["id"]), modality=get_modality(e["modality"]).name, image=base / e["image"],
                   hounsfield_offset=_offset(e.get("intensity")), case=str(e.get("case", e["id"])))
            for e in manifest.get("unlabelled", [])]
