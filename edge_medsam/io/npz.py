"""MedSAM-on-Laptop challenge cases (.npz with imgs, gts, boxes, spacing) and their ``segs`` outputs.

Layouts as the challenge writes them: 2D ``imgs`` (H, W, 3) uint8 with boxes N x [x0, y0, x1, y1];
3D ``imgs`` (D, H, W) uint8 (SimpleITK's array order) with boxes N x [x_min, y_min, z_min, x_max, y_max, z_max]
and ``spacing`` in SimpleITK order (x, y, z). Outputs hold one key ``segs``, the label map of imgs' shape
without the channel.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_medsam.errors import InputError
from edge_medsam.io.files import (
    ZIP_ERRORS,
    PathLike,
    atomic_write,
    check_finite,
    check_voxels,
    existing_file,
    resolve_limits,
)
from edge_medsam.io.masks import label_array
from edge_medsam.io.types import Image2D, ReadLimits, Volume
from edge_medsam.modalities import get_modality

_FIX = "give a MedSAM-on-Laptop case: imgs (H, W, 3) or (D, H, W), optional gts, boxes, spacing"


def modality_from_name(path: Path | None) -> str | None:
    """The modality a challenge file name declares (``2DBox_Dermoscopy_0001``, ``3DBox_CT_0042``), if any."""
    for token in (path.stem.split("_") if path else []):
        try:
            return get_modality(token).name
        except InputError:
            continue
    return None


@dataclass
class LaptopCase:
    """One challenge case: the image, optional ground truth, box prompts and voxel spacing."""

    imgs: np.ndarray
    gts: np.ndarray | None = None
    boxes: np.ndarray | None = None
    spacing: tuple[float, ...] | None = None
    path: Path | None = None

    @property
    def is_3d(self) -> bool:
        """True for a (D, H, W) volume, False for an (H, W, 3) or (H, W) picture."""
        return self.imgs.ndim == 3 and self.imgs.shape[-1] != 3

    def to_image(self) -> Image2D:
        """The 2D case as an Image2D (the whole case sits in ``meta["laptop_case"]``)."""
        if self.is_3d:
            raise InputError(f"case is a 3D volume of shape {self.imgs.shape}", path=self.path,
                             fix="read it with read_volume")
        return Image2D(pixels=self.imgs, path=self.path, modality=modality_from_name(self.path),
                       meta={"format": "npz", "laptop_case": self})

    def to_volume(self) -> Volume:
        """The 3D case as a Volume: ``voxels = imgs.transpose(2, 1, 0)``; labels go back with the same transpose.

        The npz keeps no origin or direction, so the affine assumes SimpleITK's identity direction (LPS).
        """
        if not self.is_3d:
            raise InputError(f"case is a 2D image of shape {self.imgs.shape}", path=self.path,
                             fix="read it with read_image")
        sx, sy, sz = self.spacing if self.spacing and len(self.spacing) == 3 else (1.0, 1.0, 1.0)
        affine = np.diag([-sx, -sy, sz, 1.0])  # LPS identity direction seen in RAS
        return Volume(voxels=np.ascontiguousarray(self.imgs.transpose(2, 1, 0)), affine=affine, path=self.path,
                      modality=modality_from_name(self.path),
                      meta={"format": "npz", "laptop_case": self, "orientation_assumed": True})


def member_shape(npz: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array from its .npy header, without decompressing the data."""
    with npz.open(f"{key}.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return tuple(shape), dtype


@contextmanager
def npz_with_imgs(path: Path, fix: str) -> Iterator[tuple[zipfile.ZipFile, set[str]]]:
    """The open .npz and its array names, ``imgs`` among them; a missing ``imgs`` or a damaged archive (also while
    the caller reads it) is one InputError with ``fix``."""
    try:
        with zipfile.ZipFile(path) as zf:
            keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            if "imgs" not in keys:
                raise InputError(f"key 'imgs' is missing (keys: {', '.join(sorted(keys)) or 'none'})", path=path,
                                 fix=fix)
            yield zf, keys
    except ZIP_ERRORS as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"not a readable .npz archive, truncated or corrupt ({err})", path=path,
                         fix=f"copy the file again; {fix}") from err


def _read_key(npz: zipfile.ZipFile, key: str, path: Path, max_items: int) -> np.ndarray:
    """One array, read without pickle after its header says it holds at most ``max_items`` numbers."""
    try:
        shape, dtype = member_shape(npz, key)
        if dtype.hasobject:  # object arrays need pickle, which is never allowed for files from outside
            raise InputError(f"key {key!r} holds Python objects, not numbers", path=path, fix=_FIX)
        if int(np.prod(shape, dtype=np.int64)) > max_items:
            raise InputError(f"key {key!r} has shape {shape}, more values than the image has pixels", path=path,
                             fix=_FIX)
        with npz.open(f"{key}.npy") as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except ZIP_ERRORS as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"key {key!r} is truncated or corrupt ({err})", path=path,
                         fix="copy the file again") from err


def _boxes(raw: np.ndarray, is_3d: bool, path: Path) -> np.ndarray:
    width = 6 if is_3d else 4
    boxes = np.asarray(raw, dtype=np.float64)
    if boxes.ndim == 1 and boxes.size == width:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != width:
        layout = "[x_min, y_min, z_min, x_max, y_max, z_max]" if is_3d else "[x0, y0, x1, y1]"
        raise InputError(f"key 'boxes' has shape {raw.shape}, expected N x {width}", path=path,
                         fix=f"give one row {layout} per object")
    check_finite(boxes, path, "key 'boxes'")
    half = width // 2
    if (boxes[:, half:] < boxes[:, :half]).any():
        raise InputError("key 'boxes' has a box whose maximum is below its minimum", path=path,
                         fix="order each box as minima first, then maxima")
    return boxes


def read_laptop_npz(path: PathLike, limits: ReadLimits | None = None) -> LaptopCase:
    """Read and validate a MedSAM-on-Laptop .npz case; size limits are checked before decompressing."""
    p = existing_file(path)
    limits = resolve_limits(limits)
    with npz_with_imgs(p, _FIX) as (zf, keys):
        shape, dtype = member_shape(zf, "imgs")
        is_3d = len(shape) == 3 and shape[-1] != 3
        if len(shape) not in (2, 3) or dtype.kind not in "uif":
            raise InputError(f"key 'imgs' has shape {shape} and type {dtype}", path=p, fix=_FIX)
        if is_3d:
            check_voxels(shape, limits, p)
        else:
            limits.check_2d(shape[0], shape[1], p)
        items = max(int(np.prod(shape, dtype=np.int64)), 64)  # 64: room for boxes and spacing of tiny images
        imgs = _read_key(zf, "imgs", p, items)
        check_finite(imgs, p, "key 'imgs'")
        gts = _read_key(zf, "gts", p, items) if "gts" in keys else None
        boxes = _boxes(_read_key(zf, "boxes", p, items), is_3d, p) if "boxes" in keys else None
        spacing = _read_key(zf, "spacing", p, items) if "spacing" in keys else None
    spatial = imgs.shape if is_3d else imgs.shape[:2]
    if gts is not None:
        if gts.shape != spatial:
            raise InputError(f"key 'gts' has shape {gts.shape} but imgs is {spatial}", path=p,
                             fix="give ground truth with the shape of imgs (without the colour channel)")
        gts = label_array(gts, p)
    if spacing is not None:
        spacing = np.asarray(spacing, dtype=np.float64).ravel()
        if spacing.size not in (2, 3) or not np.isfinite(spacing).all() or (spacing <= 0).any():
            raise InputError(f"key 'spacing' is {spacing.tolist()}, not 2 or 3 positive sizes in mm", path=p,
                             fix="give spacing as (x, y, z) in mm, as SimpleITK's GetSpacing() returns")
        spacing = tuple(float(v) for v in spacing)
    return LaptopCase(imgs=imgs, gts=gts, boxes=boxes, spacing=spacing, path=p)


def write_laptop_npz(path: PathLike, segs: np.ndarray, case: LaptopCase | None = None) -> Path:
    """Write a challenge output (key ``segs``, compressed, atomically); ``case`` checks that the shapes match."""
    arr = label_array(segs, path, max_label=0xFFFF)
    if case is not None:
        expected = case.imgs.shape if case.is_3d else case.imgs.shape[:2]
        if arr.shape != expected:
            raise InputError(f"segs has shape {arr.shape} but the case's imgs is {expected}", path=path,
                             fix="give one label per pixel of imgs (for a Volume: labels.transpose(2, 1, 0))")

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object, so numpy does not append another .npz to the name
            np.savez_compressed(f, segs=arr)

    return atomic_write(path, save)
