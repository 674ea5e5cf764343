"""CVPR 2025 interactive 3D challenge cases (``CVPR25_iter_eval.py``): .npz inputs and their ``segs`` outputs.

A case holds ``imgs`` (Z, Y, X) in [0, 255], ``spacing`` (x, y, z) mm in SimpleITK's order, optionally ``gts``
(Z, Y, X), and, as the evaluation hands it to a model, ``boxes`` (one dict per object: ``z_min``, ``z_max``, ``z_mid``,
``z_mid_x_min``, ``z_mid_y_min``, ``z_mid_x_max``, ``z_mid_y_max``; object n is label n + 1), ``clicks`` (one dict per
object, ``{"fg": [[z, y, x], ...], "bg": [...]}`` in imgs' array order), ``clicks_order`` (per object, one of "fg",
"bg" or None per click step) and ``prev_pred`` (the previous step's label volume). Boxes and clicks are pickled
Python objects in the challenge's files; they are read with an unpickler that builds only dicts, lists, numbers,
strings and numpy arrays, so a file cannot run code. A MedSAM-on-Laptop 3D case (numeric boxes N x
[x_min, y_min, z_min, x_max, y_max, z_max]) reads too, each box's middle slice taken as ``z_mid``.

As Volumes: ``voxels = imgs.transpose(2, 1, 0)`` (i, j, k) = (x, y, z), labels alike (``LaptopCase.to_volume``).
"""

from __future__ import annotations

import importlib
import io
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from edge_medsam.io.npz import LaptopCase, member_shape, npz_with_imgs
from edge_medsam.io.types import ReadLimits, Volume

BOX_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")
CLICK_KINDS = ("fg", "bg")
MAX_OBJECT_BYTES = 64 * 1024 * 1024  # pickled boxes / clicks larger than this are not a challenge case
_FIX = ("give a CVPR 2025 interactive 3D case: imgs (Z, Y, X), spacing (x, y, z), optional gts, boxes, clicks, "
        "clicks_order, prev_pred")
# The globals numpy's pickles of object arrays and numpy scalars name; nothing else may be built.
_NUMPY_GLOBALS = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


class _NumbersUnpickler(pickle.Unpickler):
    """Unpickles containers, numbers, strings and numpy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        if module.startswith("numpy"):  # numpy 1 files name numpy.core, numpy 2 numpy._core
            module = module.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else module
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ChallengeBox:
    """One object's box as the challenge gives it: the z range and the 2D box on slice ``z_mid`` (inclusive pixels)."""

    z_min: int
    z_max: int
    z_mid: int
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    def voxel_box(self) -> tuple[int, int, int, int, int, int]:
        """(i_min, j_min, k_min, i_max, j_max, k_max) in Volume voxels: x = i, y = j, z = k."""
        return self.x_min, self.y_min, self.z_min, self.x_max, self.y_max, self.z_max

    def to_dict(self) -> dict[str, int]:
        """The challenge's dict."""
        return dict(zip(BOX_KEYS, (self.z_min, self.z_max, self.z_mid, self.x_min, self.y_min, self.x_max,
                                   self.y_max), strict=True))

    @classmethod
    def from_mask(cls, mask_zyx: np.ndarray) -> ChallengeBox:
        """The challenge's box of a (Z, Y, X) object mask (``get_boxes.py``, without its random enlargement)."""
        z = np.nonzero(mask_zyx)[0]
        if z.size == 0:
            raise InputError("the object is empty, so it has no box", fix="give a non-empty object mask")
        slices = np.unique(z)
        middle = int(slices[len(slices) // 2])
        ys, xs = np.nonzero(mask_zyx[middle])
        return cls(int(z.min()), int(z.max()), middle, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


@dataclass
class ChallengeCase:
    """One case in the challenge's own arrays (Z, Y, X); ``boxes`` by label; ``clicks`` and ``clicks_order`` by label."""

    imgs: np.ndarray
    spacing: tuple[float, float, float]
    gts: np.ndarray | None = None
    boxes: dict[int, ChallengeBox] | None = None
    clicks: dict[int, dict[str, list[tuple[int, int, int]]]] = field(default_factory=dict)
    clicks_order: dict[int, list[str | None]] = field(default_factory=dict)
    prev_pred: np.ndarray | None = None
    path: Path | None = None

    def volume(self) -> Volume:
        """The image as a Volume in (i, j, k) = (x, y, z)."""
        return LaptopCase(imgs=self.imgs, spacing=self.spacing, path=self.path).to_volume()

    def truth(self) -> np.ndarray | None:
        """The ground truth in (i, j, k), if the case holds it."""
        return None if self.gts is None else np.ascontiguousarray(self.gts.transpose(2, 1, 0))

    def click_sequence(self) -> list[tuple[int, tuple[int, int, int], bool]]:
        """Every click as (label, (z, y, x), positive) in the order the evaluation placed them: step by step,
        objects in label order within a step."""
        taken = {label: {kind: 0 for kind in CLICK_KINDS} for label in self.clicks_order}
        steps = max((len(order) for order in self.clicks_order.values()), default=0)
        sequence = []
        for step in range(steps):
            for label, order in sorted(self.clicks_order.items()):
                kind = order[step] if step < len(order) else None
                if kind is None:
                    continue
                sequence.append((label, self.clicks[label][kind][taken[label][kind]], kind == "fg"))
                taken[label][kind] += 1
        return sequence


def _read_member(npz: zipfile.ZipFile, key: str, path: Path, max_items: int) -> Any:
    """One array; object arrays (boxes, clicks) through the numbers-only unpickler, as nested Python values."""
    name = f"{key}.npy"
    with npz.open(name) as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if int(np.prod(shape, dtype=np.int64)) > max_items:
            raise InputError(f"key {key!r} has shape {shape}, more values than the image has voxels", path=path,
                             fix=_FIX)
        if not dtype.hasobject:
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False)
        if npz.getinfo(name).file_size > MAX_OBJECT_BYTES:
            raise InputError(f"key {key!r} holds {npz.getinfo(name).file_size} bytes of objects", path=path, fix=_FIX)
        try:
            value = _NumbersUnpickler(io.BytesIO(f.read())).load()
        except (pickle.UnpicklingError, AttributeError, ImportError, TypeError) as err:
            raise InputError(f"key {key!r} holds objects other than numbers, lists and dicts ({err})", path=path,
                             fix=_FIX) from err
    return value.tolist() if isinstance(value, np.ndarray) else value


def _integer(value: Any, what: str, path: Path) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or not float(value).is_integer():
        raise InputError(f"{what} is {value!r}, not a whole number", path=path, fix=_FIX)
    return int(value)


def _check_range(low: int, high: int, size: int, what: str, path: Path) -> None:
    if not 0 <= low <= high < size:
        raise InputError(f"{what} {low}..{high} is outside 0..{size - 1} or reversed", path=path,
                         fix="give boxes inside the image, minima first")


def _boxes(raw: Any, shape: tuple[int, int, int], path: Path) -> dict[int, ChallengeBox]:
    depth, height, width = shape
    if isinstance(raw, np.ndarray):  # MedSAM-on-Laptop 3D: N x [x_min, y_min, z_min, x_max, y_max, z_max]
        rows = np.atleast_2d(raw)
        if rows.ndim != 2 or rows.shape[1] != 6:
            raise InputError(f"key 'boxes' has shape {raw.shape}, neither dicts nor N x 6", path=path, fix=_FIX)
        raw = [{"z_min": r[2], "z_max": r[5], "z_mid": (int(r[2]) + int(r[5])) // 2, "z_mid_x_min": r[0],
                "z_mid_y_min": r[1], "z_mid_x_max": r[3], "z_mid_y_max": r[4]} for r in rows.tolist()]
    if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
        raise InputError("key 'boxes' is not a list of dicts, one per object", path=path, fix=_FIX)
    boxes = {}
    for n, entry in enumerate(raw):
        missing = [k for k in BOX_KEYS if k not in entry]
        if missing:
            raise InputError(f"box {n} lacks {', '.join(missing)}", path=path, fix=f"give each box {', '.join(BOX_KEYS)}")
        box = ChallengeBox(*(_integer(entry[k], f"box {n} {k}", path) for k in BOX_KEYS))
        _check_range(box.z_min, box.z_max, depth, f"box {n} z", path)
        _check_range(box.z_mid, box.z_mid, depth, f"box {n} z_mid", path)
        _check_range(box.x_min, box.x_max, width, f"box {n} x", path)
        _check_range(box.y_min, box.y_max, height, f"box {n} y", path)
        boxes[n + 1] = box
    return boxes


def _clicks(raw: Any, order: Any, shape: tuple[int, int, int], path: Path
            ) -> tuple[dict[int, dict[str, list[tuple[int, int, int]]]], dict[int, list[str | None]]]:
    if isinstance(order, np.ndarray):  # all entries strings: stored as a plain string array
        order = order.tolist()
    if not isinstance(raw, list) or not isinstance(order, list) or len(raw) != len(order):
        raise InputError("keys 'clicks' and 'clicks_order' are not two lists with one entry per object", path=path,
                         fix=_FIX)
    clicks, orders = {}, {}
    for n, (entry, sequence) in enumerate(zip(raw, order, strict=True)):
        if not isinstance(entry, dict) or set(entry) - set(CLICK_KINDS) or not isinstance(sequence, list):
            raise InputError(f"clicks of object {n} are not {{'fg': [...], 'bg': [...]}} with a list of kinds",
                             path=path, fix=_FIX)
        points: dict[str, list[tuple[int, int, int]]] = {}
        for kind in CLICK_KINDS:
            coords = entry.get(kind, [])
            if not isinstance(coords, list):
                raise InputError(f"clicks[{n}][{kind!r}] is not a list", path=path, fix=_FIX)
            points[kind] = []
            for c in coords:
                if not isinstance(c, (list, tuple, np.ndarray)) or len(c) != 3:
                    raise InputError(f"click {c!r} of object {n} is not [z, y, x]", path=path, fix=_FIX)
                zyx = tuple(_integer(v, f"click of object {n}", path) for v in c)
                if not all(0 <= v < s for v, s in zip(zyx, shape, strict=True)):
                    raise InputError(f"click {list(zyx)} of object {n} is outside the image {shape}", path=path,
                                     fix="give clicks as [z, y, x] voxel indices of imgs")
                points[kind].append(zyx)  # type: ignore[arg-type]
        if any(k not in (*CLICK_KINDS, None) for k in sequence) or \
                any(sequence.count(kind) != len(points[kind]) for kind in CLICK_KINDS):
            raise InputError(f"clicks_order of object {n} does not list each of its clicks as 'fg' or 'bg' once",
                             path=path, fix=_FIX)
        clicks[n + 1], orders[n + 1] = points, list(sequence)
    return clicks, orders


def _spacing(raw: Any, path: Path) -> tuple[float, float, float]:
    values = np.asarray(raw, np.float64).ravel() if raw is not None else np.zeros(0)
    if values.size != 3 or not np.isfinite(values).all() or (values <= 0).any():
        raise InputError(f"key 'spacing' is {values.tolist() if raw is not None else 'missing'}, not 3 positive mm",
                         path=path, fix="give spacing as (x, y, z) in mm, as SimpleITK's GetSpacing() returns")
    return float(values[0]), float(values[1]), float(values[2])


def _labels(raw: Any, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if not isinstance(raw, np.ndarray) or raw.shape != shape:
        got = raw.shape if isinstance(raw, np.ndarray) else type(raw).__name__
        raise InputError(f"key {key!r} has shape {got} but imgs is {shape}", path=path,
                         fix=f"give {key} with the shape of imgs")
    return label_array(raw, path, max_label=0xFFFF)


def read_challenge_npz(path: PathLike, limits: ReadLimits | None = None) -> ChallengeCase:
    """Read and validate a challenge case (sizes checked from the headers before anything is decompressed)."""
    p = existing_file(path)
    limits = resolve_limits(limits)
    with npz_with_imgs(p, _FIX) as (zf, keys):
        shape, dtype = member_shape(zf, "imgs")
        if len(shape) != 3 or dtype.kind not in "uif":
            raise InputError(f"key 'imgs' has shape {shape} and type {dtype}, not a (Z, Y, X) volume", path=p,
                             fix=_FIX)
        check_voxels(shape, limits, p)
        items = max(int(np.prod(shape, dtype=np.int64)), 64)
        raw = {key: _read_member(zf, key, p, items) for key in sorted(keys)}
    imgs = raw["imgs"]
    check_finite(imgs, p, "key 'imgs'")
    case = ChallengeCase(imgs=imgs, spacing=_spacing(raw.get("spacing"), p), path=p)
    if "gts" in raw:
        case.gts = _labels(raw["gts"], "gts", imgs.shape, p)
    if "prev_pred" in raw:
        case.prev_pred = _labels(raw["prev_pred"], "prev_pred", imgs.shape, p)
    if "boxes" in raw:
        case.boxes = _boxes(raw["boxes"], imgs.shape, p)
    if ("clicks" in raw) != ("clicks_order" in raw):
        raise InputError("keys 'clicks' and 'clicks_order' must come together", path=p, fix=_FIX)
    if "clicks" in raw:
        case.clicks, case.clicks_order = _clicks(raw["clicks"], raw["clicks_order"], imgs.shape, p)
    return case


def read_challenge_gts(path: PathLike, shape: tuple[int, int, int]) -> np.ndarray:
    """The ``gts`` (Z, Y, X) of a ground-truth .npz (the challenge's validation_gts files) for imgs of ``shape``."""
    p = existing_file(path)
    try:
        with zipfile.ZipFile(p) as zf:
            if "gts.npy" not in zf.namelist():
                raise InputError("key 'gts' is missing", path=p, fix="give the case's ground-truth .npz (key gts)")
            raw = _read_member(zf, "gts", p, max(int(np.prod(shape, dtype=np.int64)), 64))
    except ZIP_ERRORS as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"not a readable .npz archive ({err})", path=p, fix="copy the file again") from err
    return _labels(raw, "gts", tuple(shape), p)


def _object_array(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def write_challenge_npz(path: PathLike, case: ChallengeCase) -> Path:
    """Write a case as the challenge hands it to a model (imgs, spacing and what the case holds), atomically."""
    arrays: dict[str, Any] = {"imgs": case.imgs, "spacing": np.asarray(case.spacing, np.float64)}
    if case.gts is not None:
        arrays["gts"] = case.gts
    if case.boxes is not None:
        arrays["boxes"] = _object_array([case.boxes[label].to_dict() for label in sorted(case.boxes)])
    if case.clicks_order:
        labels = sorted(case.clicks_order)
        arrays["clicks"] = _object_array([{kind: [list(c) for c in case.clicks[label][kind]] for kind in CLICK_KINDS}
                                          for label in labels])
        arrays["clicks_order"] = _object_array([list(case.clicks_order[label]) for label in labels])
    if case.prev_pred is not None:
        arrays["prev_pred"] = case.prev_pred

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, save)


def write_challenge_segs(path: PathLike, segs: np.ndarray, all_segs: Sequence[np.ndarray] = ()) -> Path:
    """Write an output as the challenge reads it: ``segs`` (Z, Y, X), and ``all_segs`` (one per step) if given."""
    arrays = {"segs": label_array(segs, path, max_label=0xFFFF)}
    if all_segs:
        arrays["all_segs"] = np.stack([label_array(s, path, max_label=0xFFFF) for s in all_segs])

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, save)
