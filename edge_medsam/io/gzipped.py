"""gzip-compressed DICOM (``.dcm.gz``, or any gzip file holding one): recognised by content, unpacked with a bound."""

from __future__ import annotations

import gzip
import zlib

from edge_medsam.errors import InputError
from edge_medsam.io.files import PathLike, not_readable, sniff_format
from edge_medsam.io.types import ReadLimits

_MAGIC = b"\x1f\x8b"
_ERRORS = (OSError, EOFError, zlib.error)


def is_gzip(path: PathLike) -> bool:
    """True if the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == _MAGIC


def dicom_marked(path: PathLike) -> bool:
    """True if the file, or its gzip content, has the DICOM marker ``DICM`` at byte 128."""
    try:
        with gzip.open(path, "rb") if is_gzip(path) else open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except _ERRORS:
        return False


def sniff(path: PathLike) -> str | None:
    """``sniff_format``, naming gzip-compressed DICOM "dicom" too."""
    kind = sniff_format(path)
    return "dicom" if kind == "gzip" and dicom_marked(path) else kind


def not_gzip_image(path: PathLike) -> InputError:
    """The error for a gzip file holding neither NIfTI nor DICOM."""
    return not_readable(path, "gzip-compressed data that is neither DICOM nor NIfTI",
                        fix="decompress it (gunzip) and give the file inside")


def gunzip(path: PathLike, limits: ReadLimits) -> bytes:
    """The content of a gzip file, at most what a volume within ``limits`` needs; InputError if damaged or larger."""
    max_bytes = 8 * limits.max_voxels + (1 << 20)  # 2-4 bytes a voxel, and room for the headers
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except _ERRORS as err:
        raise not_readable(path, f"the gzip data is truncated or corrupt ({err})",
                           fix="copy or export the file again") from err
    if len(data) > max_bytes:
        raise InputError(f"gzip expands to more than {max_bytes} bytes", path=path,
                         fix="decompress it yourself, or raise EDGE_MEDSAM_MAX_VOXELS")
    return data
