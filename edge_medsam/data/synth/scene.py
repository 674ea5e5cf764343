"""Samples as the generators return them, and the scene they are painted on (regions, objects, label maps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Objects covered down to fewer pixels than this are dropped from the label map: nobody can segment them.
MIN_AREA = 4

KINDS = ("organ", "lesion", "instance", "structure")


@dataclass(frozen=True)
class SynthObject:
    """One labelled object: its label value, class name, kind and size in pixels (voxels for a volume)."""

    label: int
    name: str
    kind: str
    area: int


@dataclass
class SynthSample:
    """A generated 2D image and its exact label map.

    ``pixels``: (H, W) uint8 for grey modalities, (H, W, 3) uint8 for colour ones, (H, W) int16 Hounsfield
    units for CT (``hounsfield`` True). ``labels``: (H, W) uint8 (uint16 beyond 255 objects), 0 = background.
    """

    pixels: np.ndarray
    labels: np.ndarray
    objects: list[SynthObject]
    hounsfield: bool
    modality: str


@dataclass(frozen=True)
class Region:
    """A painted area: the tissue that decides its look, and the object (index into Scene.objects) it belongs to."""

    tissue: str
    obj: int | None


class Scene:
    """Anatomy painted region by region on a canvas; a later region covers the earlier ones where they overlap.

    Several regions may belong to one object (a brain is grey plus white matter), and regions without an object
    are unlabelled anatomy (fat, bone). Geometry only: how tissues look is the renderer's business.
    """

    def __init__(self, size: int, background: str = "background"):
        self.size = size
        self.regions: list[Region] = [Region(background, None)]
        self.objects: list[tuple[str, str]] = []
        self._canvas = Image.new("I", (size, size), 0)
        self._draw = ImageDraw.Draw(self._canvas)
        self._map: np.ndarray | None = None

    def add_object(self, name: str, kind: str) -> int:
        """Declare an object (class name, kind); returns its handle for ``add_region``."""
        if kind not in KINDS:
            raise ValueError(f"object kind {kind!r} is not one of {KINDS}")
        self.objects.append((name, kind))
        return len(self.objects) - 1

    def add_region(self, tissue: str, obj: int | None = None) -> int:
        """Declare a region of ``tissue`` (part of object ``obj`` if given); returns its id for the painters."""
        self.regions.append(Region(tissue, obj))
        return len(self.regions) - 1

    def region(self, tissue: str, name: str | None = None, kind: str = "organ") -> int:
        """A region that is an object of its own (or unlabelled when ``name`` is None)."""
        return self.add_region(tissue, None if name is None else self.add_object(name, kind))

    def polygon(self, region: int, points: np.ndarray | None) -> None:
        """Paint a polygon given as (N, 2) pixel coordinates (x, y); None or fewer than 3 points paint nothing."""
        if points is not None and len(points) >= 3:
            self._draw.polygon(np.asarray(points, np.float64).ravel().tolist(), fill=region)
            self._map = None

    def line(self, region: int, points: np.ndarray, width: float) -> None:
        """Paint a polyline of the given width in pixels."""
        if len(points) >= 2:
            self._draw.line(np.asarray(points, np.float64).ravel().tolist(), fill=region,
                            width=max(1, round(width)), joint="curve")
            self._map = None

    def mask(self, region: int, mask: np.ndarray) -> None:
        """Paint wherever the boolean ``mask`` is set."""
        self._canvas.paste(region, mask=Image.fromarray(mask.astype(np.uint8) * np.uint8(255)))
        self._map = None

    def region_map(self) -> np.ndarray:
        """(H, W) int32 region ids as painted so far."""
        if self._map is None:
            self._map = np.asarray(self._canvas)
        return self._map

    def lookup(self, table: Mapping[str, float | Sequence[float]], per_region: np.ndarray | None = None) -> np.ndarray:
        """Per-pixel values of each region's tissue from ``table`` (+ ``per_region`` offsets).

        Float32 (H, W) for numbers, channel-first (C, H, W) for colours.
        """
        values = np.array([table[r.tissue] for r in self.regions], np.float32)
        if per_region is not None:
            values = values + per_region.astype(np.float32).reshape((len(self.regions),) + (1,) * (values.ndim - 1))
        # np.take is several times faster than fancy indexing here.
        return np.take(values.T, self.region_map(), axis=values.ndim - 1)

    def tissue_mask(self, *tissues: str) -> np.ndarray:
        """Boolean map of the pixels showing any of ``tissues``."""
        hit = np.array([r.tissue in tissues for r in self.regions])
        return np.take(hit, self.region_map())

    def finish(self) -> tuple[np.ndarray, list[SynthObject]]:
        """The label map (objects numbered 1..N in the order declared) and its objects with their areas."""
        return label_regions(self.region_map(), self.regions, self.objects)


def label_regions(region_map: np.ndarray, regions: Sequence[Region], objects: Sequence[tuple[str, str]],
                  min_area: int = MIN_AREA) -> tuple[np.ndarray, list[SynthObject]]:
    """Turn a region map (any dimension) into a compact label map; objects smaller than ``min_area`` are dropped."""
    region_area = np.bincount(region_map.ravel(), minlength=len(regions))
    object_area = np.zeros(len(objects), np.int64)
    for rid, reg in enumerate(regions):
        if reg.obj is not None:
            object_area[reg.obj] += region_area[rid]
    numbers = np.zeros(len(objects), np.int64)
    kept: list[SynthObject] = []
    for index, (name, kind) in enumerate(objects):
        if object_area[index] >= min_area:
            numbers[index] = len(kept) + 1
            kept.append(SynthObject(len(kept) + 1, name, kind, int(object_area[index])))
    dtype = np.uint8 if len(kept) <= 255 else np.uint16
    lut = np.array([0 if r.obj is None else numbers[r.obj] for r in regions], dtype)
    return np.take(lut, region_map), kept
