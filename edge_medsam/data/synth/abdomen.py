"""A 3D abdomen phantom (ellipsoid organs with irregular outlines) whose axial cross-sections CT and PET render.

Coordinates are millimetres from the centre of the field of view: x towards the image right (patient left),
y towards the image bottom (posterior), z towards the head. An organ's cross-section at height z is its
outline scaled by sqrt(1 - ((z - cz) / rz)^2), so slices of one phantom agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from edge_medsam.data.synth.scene import Scene
from edge_medsam.data.synth.shapes import blob, irregular_radii

FIELD_OF_VIEW_MM = 340.0
VOLUME_EXTENT_MM = (-90.0, 70.0)  # covers the kidneys and most of the liver


@dataclass(frozen=True)
class Part:
    """An ellipsoid (a cylinder when ``rz`` is infinite) of one tissue, optionally part of a named object."""

    tissue: str
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    angle: float = 0.0
    outline: np.ndarray | None = None
    obj: str | None = None  # key into Phantom.objects

    def scale_at(self, z: float) -> float:
        """How much of the outline the slice at height ``z`` cuts (0 = misses the part)."""
        if np.isinf(self.radii[2]):
            return 1.0
        rel = (z - self.centre[2]) / self.radii[2]
        return float(np.sqrt(1.0 - rel * rel)) if abs(rel) < 1.0 else 0.0

    def outline_px(self, z: float, size: int) -> np.ndarray | None:
        """The cross-section outline in pixel coordinates, or None where the slice misses the part."""
        scale = self.scale_at(z)
        if scale <= 0.0:
            return None
        per_px = size / FIELD_OF_VIEW_MM
        cx, cy = (size / 2 + self.centre[0] * per_px, size / 2 + self.centre[1] * per_px)
        return blob(cx, cy, self.radii[0] * scale * per_px, self.radii[1] * scale * per_px, self.angle, self.outline)


@dataclass
class Phantom:
    """The parts of one patient in painting order, and the objects they belong to (key -> (class name, kind)).

    ``shell`` (table, body, muscle wall, cavity) is painted first, then ``inside`` (bowel, organs, lesions), which
    is clipped to the cavity, then ``frame`` (spine, back muscles, great vessels, ribs) over everything.
    """

    shell: list[Part] = field(default_factory=list)
    inside: list[Part] = field(default_factory=list)
    frame: list[Part] = field(default_factory=list)
    objects: dict[str, tuple[str, str]] = field(default_factory=dict)
    focus_z: float = 0.0  # a height where the liver and a lesion are certainly cut (for single slices)

    def declare(self, key: str, name: str, kind: str) -> str:
        """Make ``key`` a labelled object of class ``name``; parts with ``obj=key`` make it up."""
        self.objects[key] = (name, kind)
        return key


def _inside(rng: np.random.Generator, part: Part, reach: float) -> tuple[float, float, float]:
    """A random point within ``reach`` of a part's ellipsoid (relative to its radii)."""
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    rel = direction * reach * rng.uniform(0.0, 1.0) ** (1 / 3)
    cos, sin = np.cos(part.angle), np.sin(part.angle)
    x, y = rel[0] * part.radii[0], rel[1] * part.radii[1]
    return part.centre[0] + cos * x - sin * y, part.centre[1] + sin * x + cos * y, part.centre[2] + rel[2] * part.radii[2]


def build_phantom(rng: np.random.Generator) -> Phantom:
    """Draw one patient's abdomen: body wall, spine, vessels, liver, spleen, kidneys, stomach, bowel, lesions."""
    ph = Phantom()
    inf = float("inf")
    brx, bry = rng.uniform(135, 168), rng.uniform(98, 122)
    bcy = rng.uniform(-14, -4)
    wall = irregular_radii(rng, 0.025, 4)
    fat_keep = rng.uniform(0.86, 0.93)
    cavity_keep = fat_keep - rng.uniform(0.04, 0.06)
    cav_x, cav_y = brx * cavity_keep, bry * cavity_keep
    table_y = bcy + bry + rng.uniform(8, 16)
    ph.shell = [
        Part("table", (0.0, table_y + 90, 0.0), (320.0, 90.0, inf)),
        Part("air", (0.0, table_y + 97, 0.0), (300.0, 90.0, inf)),
        Part("fat", (0.0, bcy, 0.0), (brx, bry, inf), 0.0, wall),
        Part("muscle", (0.0, bcy, 0.0), (brx * fat_keep, bry * fat_keep, inf), 0.0, wall),
        Part("visceral_fat", (0.0, bcy, 0.0), (cav_x, cav_y, inf), 0.0, wall),
    ]
    spine_y = bcy + bry * rng.uniform(0.42, 0.5)
    inside = ph.inside

    for _ in range(rng.integers(3, 9)):  # bowel loops, some holding gas
        centre = (rng.uniform(-0.45, 0.6) * cav_x, bcy + rng.uniform(-0.75, 0.15) * cav_y, rng.uniform(-80, 60))
        radius = rng.uniform(7, 15)
        inside.append(Part("bowel", centre, (radius, radius * rng.uniform(0.7, 1.1), rng.uniform(25, 45)),
                           rng.uniform(0, np.pi)))
        if rng.random() < 0.5:
            inside.append(Part("gas", centre, (radius * 0.55, radius * 0.45, rng.uniform(20, 40))))

    liver = Part("liver", (-cav_x * rng.uniform(0.36, 0.44), bcy + rng.uniform(-12, 0), rng.uniform(10, 30)),
                 (cav_x * rng.uniform(0.42, 0.5), cav_y * rng.uniform(0.55, 0.68), rng.uniform(75, 95)),
                 rng.uniform(-0.45, -0.1), irregular_radii(rng, 0.07, 5), obj=ph.declare("liver", "liver", "organ"))
    stomach = Part("stomach", (cav_x * rng.uniform(0.25, 0.4), bcy - cav_y * rng.uniform(0.3, 0.45),
                               rng.uniform(20, 45)),
                   (rng.uniform(32, 45), rng.uniform(24, 32), rng.uniform(40, 55)), rng.uniform(-0.5, 0.2),
                   irregular_radii(rng, 0.06, 4), obj=ph.declare("stomach", "stomach", "organ"))
    inside += [liver, stomach,
               Part("gas", (stomach.centre[0], stomach.centre[1] - stomach.radii[1] * 0.55, stomach.centre[2]),
                    (stomach.radii[0] * 0.6, stomach.radii[1] * 0.35, stomach.radii[2] * 0.8), stomach.angle,
                    obj="stomach"),
               Part("spleen", (cav_x * rng.uniform(0.55, 0.68), bcy + cav_y * rng.uniform(0.1, 0.3),
                               rng.uniform(15, 35)),
                    (rng.uniform(20, 28), rng.uniform(38, 50), rng.uniform(40, 55)), rng.uniform(0.4, 0.9),
                    irregular_radii(rng, 0.06, 4), obj=ph.declare("spleen", "spleen", "organ"))]
    for side, name in ((-1, "kidney_right"), (1, "kidney_left")):
        centre = (side * rng.uniform(52, 66), spine_y - rng.uniform(0, 12), rng.uniform(-45, -20))
        radii = (rng.uniform(20, 27), rng.uniform(30, 38), rng.uniform(45, 58))
        angle = side * rng.uniform(0.35, 0.7)
        key = ph.declare(name, name, "organ")
        hilum = (centre[0] - side * radii[0] * 0.45, centre[1] - radii[1] * 0.1, centre[2])
        inside += [Part("kidney", centre, radii, angle, irregular_radii(rng, 0.04, 3), obj=key),
                   Part("renal_sinus", hilum, (radii[0] * 0.4, radii[1] * 0.45, radii[2] * 0.7), angle, obj=key)]

    ph.focus_z = liver.centre[2] + rng.uniform(-0.55, 0.55) * liver.radii[2]
    for index in range(rng.integers(1, 4)):
        radius = rng.uniform(4, 8) if index == 1 else rng.uniform(6, 18)
        x, y, z = _inside(rng, liver, 0.55)
        if index == 0:  # the first lesion sits on the focus slice, so a single slice always shows one
            flat = Part("", liver.centre, (liver.radii[0], liver.radii[1], 0.0), liver.angle)
            x, y, _ = _inside(rng, flat, 0.5)
            z = ph.focus_z + rng.uniform(-0.3, 0.3) * radius
        inside.append(Part("lesion", (x, y, z), (radius, radius * rng.uniform(0.8, 1.0), radius),
                           rng.uniform(0, np.pi), irregular_radii(rng, 0.08, 3),
                           obj=ph.declare(f"lesion{index}", "lesion", "lesion")))

    vertebra = rng.uniform(15, 20)
    aorta = rng.uniform(9, 13)
    if rng.random() < 0.5:
        inside.append(Part("node", (rng.uniform(-30, 30), spine_y - vertebra - rng.uniform(28, 40),
                                    rng.uniform(-60, 40)),
                           (rng.uniform(5, 9), rng.uniform(4, 7), rng.uniform(6, 10)), rng.uniform(0, np.pi),
                           obj=ph.declare("node", "lymph_node", "lesion")))
    key = ph.declare("vertebra", "vertebra", "structure")
    ph.frame = [
        Part("muscle", (-rng.uniform(28, 36), spine_y + rng.uniform(18, 26), 0.0),
             (rng.uniform(20, 27), rng.uniform(18, 24), inf), 0.3),
        Part("muscle", (rng.uniform(28, 36), spine_y + rng.uniform(18, 26), 0.0),
             (rng.uniform(20, 27), rng.uniform(18, 24), inf), -0.3),
        Part("cortical", (0.0, spine_y, 0.0), (vertebra, vertebra * 0.92, inf), obj=key),
        Part("cancellous", (0.0, spine_y, 0.0), (vertebra - 2.5, vertebra * 0.92 - 2.5, inf), obj=key),
        Part("cortical", (0.0, spine_y + vertebra + 12, 0.0), (13.0, 8.0, inf), obj=key),
        Part("cortical", (0.0, spine_y + vertebra + 26, 0.0), (4.0, 10.0, inf), obj=key),
        Part("csf", (0.0, spine_y + vertebra + 7, 0.0), (7.0, 6.0, inf)),
        Part("aorta", (rng.uniform(6, 16), spine_y - vertebra - aorta - rng.uniform(1, 5), 0.0), (aorta, aorta, inf),
             obj=ph.declare("aorta", "aorta", "structure")),
        Part("ivc", (-rng.uniform(20, 28), spine_y - vertebra - rng.uniform(10, 18), 0.0),
             (rng.uniform(10, 14), rng.uniform(7, 10), inf), 0.2),
    ]
    for side in (-1, 1):  # ribs along the wall, repeating every few centimetres in z
        for angle in rng.uniform(-0.35, 1.15, 3):
            theta = angle if side > 0 else np.pi - angle
            rib = (np.cos(theta) * brx * (fat_keep - 0.02), bcy + np.sin(theta) * bry * (fat_keep - 0.02))
            for rib_z in np.arange(-100.0, 120.0, 24.0) + rng.uniform(0, 24):
                ph.frame.append(Part("cortical", (*rib, rib_z), (6.0, 4.0, 6.0), theta))
    return ph


def _polygon_mask(size: int, outline: np.ndarray | None) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    if outline is not None:
        ImageDraw.Draw(canvas).polygon(outline.ravel().tolist(), fill=1)
    return np.asarray(canvas, bool)


def paint_slice(phantom: Phantom, z: float, size: int, labelled: frozenset[str] | None = None) -> Scene:
    """Paint the axial cross-section at height ``z``; only object classes in ``labelled`` (None: all) get labels.

    Every slice declares the same objects and regions in the same order, so region ids agree across a volume.
    """
    scene = Scene(size, background="air")
    handles = {key: scene.add_object(name, kind) for key, (name, kind) in phantom.objects.items()
               if labelled is None or name in labelled}

    def paint(parts: list[Part]) -> list[int]:
        ids = []
        for part in parts:
            ids.append(scene.add_region(part.tissue, handles.get(part.obj) if part.obj else None))
            scene.polygon(ids[-1], part.outline_px(z, size))
        return ids

    shell_ids = paint(phantom.shell)
    paint(phantom.inside)
    # Organs stop at the abdominal wall: what crossed it becomes wall (or air) again.
    body, muscle, cavity = (_polygon_mask(size, part.outline_px(z, size)) for part in phantom.shell[2:])
    crossed = ~cavity & (scene.region_map() > shell_ids[-1])
    scene.mask(0, crossed & ~body)
    scene.mask(shell_ids[2], crossed & body & ~muscle)
    scene.mask(shell_ids[3], crossed & muscle)
    paint(phantom.frame)
    return scene
