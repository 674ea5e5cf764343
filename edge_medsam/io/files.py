"""File plumbing shared by the readers and writers: format sniffing, checks, atomic writes, optional modules."""

from __future__ import annotations

import gzip
import importlib
import os
import secrets
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from edge_medsam.errors import EdgeMedSAMError, InputError
from edge_medsam.io.types import ReadLimits

PathLike = str | os.PathLike[str]

# What zipfile and numpy's .npy reader raise on damaged archives (unknown compression, bad names or headers,
# short data). InputError is a ValueError: handlers re-raise it before catching these.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error, NotImplementedError,
              RuntimeError, SyntaxError, KeyError, IndexError)
RUNTIME_FIX = "install the readers with: pip install 'edge-medsam[runtime]'"
READABLE = "PNG, JPEG, TIFF, BMP, DICOM, NIfTI (.nii/.nii.gz), NRRD (.nrrd/.nhdr) or a MedSAM .npz"

_PICTURE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # empty archive
)
_EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp",
    ".dcm": "dicom", ".dicom": "dicom", ".ima": "dicom", ".nii": "nifti", ".hdr": "nifti", ".npz": "zip",
    ".zip": "zip", ".nrrd": "nrrd", ".nhdr": "nrrd",
}


def resolve_limits(limits: ReadLimits | None) -> ReadLimits:
    """The limits given, or the defaults overridden by the environment."""
    return limits if limits is not None else ReadLimits.from_env()


def not_readable(path: PathLike, detail: str, fix: str | None = None) -> InputError:
    """The error for a file that is not an image this package can open."""
    return InputError(f"not a readable image: {detail}", path=path,
                      fix=fix or f"give a {READABLE} file; check that it was copied completely")


def existing_file(path: PathLike) -> Path:
    """Return ``path`` as a Path if it is a non-empty file; raise InputError otherwise."""
    p = Path(path)
    if not p.exists():
        raise InputError("file does not exist", path=p, fix="check the path and the current folder")
    if p.is_dir():
        raise InputError("is a folder, not a file", path=p,
                         fix="give an image file, or read a DICOM series folder with read_volume")
    if p.stat().st_size == 0:
        raise not_readable(p, "the file is empty (0 bytes)")
    return p


def _is_nifti_header(head: bytes) -> bool:
    for order in "<>":
        if len(head) >= 348 and struct.unpack(f"{order}i", head[:4])[0] == 348:
            return head[344:347] in (b"n+1", b"ni1")
        if len(head) >= 540 and struct.unpack(f"{order}i", head[:4])[0] == 540:
            return head[4:7] in (b"n+2", b"ni2")
    return False


def sniff_format(path: PathLike) -> str | None:
    """Name the file's format from its first bytes, then its extension: png, jpeg, tiff, bmp, dicom, nifti, nrrd, zip.

    Returns "gzip" for a gzip file that does not hold NIfTI and None when neither bytes nor name say anything.
    """
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(540)
    if head[128:132] == b"DICM":  # before the picture magics: a DICOM preamble may hold a TIFF header (dual files)
        return "dicom"
    for magic, kind in _PICTURE_MAGIC:
        if head.startswith(magic):
            return kind
    if _is_nifti_header(head):
        return "nifti"
    if head.startswith(b"NRRD000"):  # "NRRD0001".."NRRD0005", attached (.nrrd) or detached (.nhdr) header
        return "nrrd"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(p, "rb") as f:
                inner = f.read(540)
        except (OSError, EOFError, zlib.error):
            return "gzip"
        return "nifti" if _is_nifti_header(inner) else "gzip"
    suffix = p.suffix.lower()
    if suffix == ".gz" and p.name.lower().endswith(".nii.gz"):
        return "nifti"
    return _EXTENSIONS.get(suffix)


def is_npz(path: PathLike) -> bool:
    """True if a zip file holds numpy arrays (an .npz), False for any other zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except ZIP_ERRORS:
        return Path(path).suffix.lower() == ".npz"
    return bool(names) and all(n.endswith(".npy") for n in names)


def check_finite(values: np.ndarray, path: PathLike | None, what: str = "image") -> None:
    """Raise InputError if a floating-point array holds NaN or Inf (readers reject them, they poison every step)."""
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise InputError(f"{what} contains {bad} NaN or Inf values", path=path,
                         fix="replace them first, e.g. numpy.nan_to_num(values, nan=background), and save again")


def check_voxels(shape: tuple[int, ...], limits: ReadLimits, path: PathLike) -> None:
    """Raise InputError if a volume of ``shape`` is empty or over ``limits.max_voxels``."""
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        raise InputError(f"volume of shape {tuple(shape)} holds no voxels", path=path, fix="give a non-empty volume")
    if count > limits.max_voxels:
        raise InputError(f"volume of shape {tuple(shape)} has {count} voxels, over the limit of {limits.max_voxels}",
                         path=path, fix="crop or downsample it first, or raise EDGE_MEDSAM_MAX_VOXELS")


def optional_module(name: str) -> ModuleType:
    """Import ``edge_medsam.io.<name>``, turning a missing optional dependency into an actionable error."""
    try:
        return importlib.import_module(f"edge_medsam.io.{name}")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("edge_medsam"):
            raise
        raise EdgeMedSAMError(f"the package {err.name!r} is not installed", fix=RUNTIME_FIX) from err


PARTIAL_PREFIX = ".tmp-"  # atomic_write's temporary files: .tmp-<random hex>-<file name>, beside the target


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``; return ``path``.

    Readers never see a half-written file; the temporary name keeps the full file name as its ending so that
    writers which choose the format by extension (.nii.gz, .npz) still do.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EdgeMedSAMError(f"cannot create the folder: {err.strerror or err}", path=target.parent,
                              fix="choose a writable output folder") from err
    tmp = target.parent / f"{PARTIAL_PREFIX}{secrets.token_hex(4)}-{target.name}"
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as err:
        raise EdgeMedSAMError(f"cannot write the file: {err.strerror or err}", path=target,
                              fix="check that the folder is writable and the disk has space") from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_text(path: PathLike, text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_partial_files(folder: PathLike) -> list[Path]:
    """Delete the temporary files that writers killed inside ``atomic_write`` left in ``folder``."""
    partial = sorted(p for p in Path(folder).glob(f"{PARTIAL_PREFIX}*") if p.is_file())
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


CACHE_ENV = "EDGE_MEDSAM_CACHE"


def cache_root() -> Path:
    """The user cache (unpacked bundles, content-keyed entries, real material): ``$EDGE_MEDSAM_CACHE``, else
    ``~/.cache/edge-medsam``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edge-medsam")
