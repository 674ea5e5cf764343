"""Draw masks (filled or as contours), points and boxes over the shown view; the legend of the objects."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Distinct on grey medical images and for the common colour-vision deficiencies (Okabe-Ito, then Tableau).
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (188, 189, 34), (23, 190, 207), (148, 103, 189))
POSITIVE, NEGATIVE = (40, 220, 60), (235, 40, 40)
MIN_DISPLAY = 480  # small images are magnified (whole pixels) to at least this size, so that they can be clicked


def colour(index: int) -> tuple[int, int, int]:
    """The colour of object ``index`` (0-based)."""
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Layer:
    """One object on the view: its mask, colour, prompts and whether it is the active object."""

    mask: np.ndarray
    colour: tuple[int, int, int]
    points: Sequence[tuple[float, float, int]] = ()
    box: tuple[float, float, float, float] | None = None
    active: bool = False


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """Dilate by ``steps`` pixels (4-neighbourhood)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The pixels of ``mask`` on its border, ``thickness`` pixels wide (inside the mask)."""
    outside = _grow(~mask, thickness)
    return mask & outside


def _thickness(shape: tuple[int, int]) -> int:
    return max(1, round(max(shape) / 300))


def _disc(canvas: np.ndarray, x: float, y: float, radius: int, fill: tuple[int, int, int]) -> None:
    """A dot centred at (x, y) in continuous coordinates (pixel i spans [i, i + 1))."""
    height, width = canvas.shape[:2]
    y0, y1 = max(0, int(y) - radius - 1), min(height, int(y) + radius + 2)
    x0, x1 = max(0, int(x) - radius - 1), min(width, int(x) + radius + 2)
    if y0 >= y1 or x0 >= x1:
        return
    rows, cols = np.ogrid[y0:y1, x0:x1]
    distance = np.hypot(rows + 0.5 - y, cols + 0.5 - x)
    patch = canvas[y0:y1, x0:x1]
    patch[distance <= radius + 1] = (255, 255, 255)  # a white rim keeps the dot visible on any colour
    patch[distance <= radius] = fill


def _rectangle(canvas: np.ndarray, box: tuple[float, float, float, float], fill: tuple[int, int, int],
               thickness: int) -> None:
    height, width = canvas.shape[:2]
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1, y1 = min(width, round(box[2])), min(height, round(box[3]))
    if x1 <= x0 or y1 <= y0:
        return
    canvas[y0:y0 + thickness, x0:x1] = fill
    canvas[max(y0, y1 - thickness):y1, x0:x1] = fill
    canvas[y0:y1, x0:x0 + thickness] = fill
    canvas[y0:y1, max(x0, x1 - thickness):x1] = fill


def zoom_for(shape: tuple[int, int], spacing: tuple[float, float] | None = None) -> tuple[int, int]:
    """Whole-number magnifications (rows, columns) that show a view at least MIN_DISPLAY pixels wide or high and,
    given the (row, column) pixel spacing, with roughly its true aspect (a sagittal slice of thick slices)."""
    aspect = spacing[0] / spacing[1] if spacing and min(spacing) > 0 else 1.0
    rows, cols = (max(1, round(aspect)), 1) if aspect >= 1 else (1, max(1, round(1 / aspect)))
    base = max(1, MIN_DISPLAY // max(shape[0] * rows, shape[1] * cols))
    return base * rows, base * cols


def magnify(image: np.ndarray, zoom: tuple[int, int]) -> np.ndarray:
    """Repeat every pixel zoom[0] times down and zoom[1] times across (pixel (x, y) starts at (x * zoom[1],
    y * zoom[0]))."""
    return np.repeat(np.repeat(image, zoom[0], axis=0), zoom[1], axis=1) if zoom != (1, 1) else image


def render(picture: np.ndarray, layers: Sequence[Layer], opacity: float = 0.45, contours: bool = False,
           zoom: tuple[int, int] = (1, 1)) -> np.ndarray:
    """The picture magnified by ``zoom`` (rows, columns), each layer's mask blended at ``opacity`` (or outlined),
    then the boxes and points on top (points of the active object only: the next click adds to them)."""
    down, across = zoom
    picture = magnify(picture, zoom)
    layers = [Layer(magnify(layer.mask, zoom), layer.colour,
                    [((x + 0.5) * across, (y + 0.5) * down, label) for x, y, label in layer.points],
                    None if layer.box is None else (layer.box[0] * across, layer.box[1] * down,
                                                    layer.box[2] * across, layer.box[3] * down), layer.active)
              for layer in layers]
    canvas = picture.astype(np.float32)
    thickness = _thickness(picture.shape[:2])
    alpha = float(np.clip(opacity, 0.0, 1.0))
    for layer in layers:
        region = contour(layer.mask, thickness) if contours else layer.mask
        strength = max(alpha, 0.85) if contours else alpha
        canvas[region] = (1.0 - strength) * canvas[region] + strength * np.asarray(layer.colour, np.float32)
    out = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    radius = max(3, round(max(picture.shape[:2]) / 120))
    for layer in layers:
        if layer.box is not None:
            _rectangle(out, layer.box, layer.colour, thickness + (1 if layer.active else 0))
        if layer.active:
            for x, y, label in layer.points:
                _disc(out, x, y, radius, POSITIVE if label else NEGATIVE)
    return out


def legend(names: Sequence[str], pixels: Sequence[int], scores: Sequence[float | None], active: int) -> str:
    """HTML list of the objects: colour, label value, name, mask size and predicted IoU; the active one bold."""
    rows = []
    for i, (name, count, score) in enumerate(zip(names, pixels, scores, strict=True)):
        r, g, b = colour(i)
        quality = "" if score is None else f", IoU {score:.2f}"
        text = f"{i + 1}: {html.escape(name)} ({count} px{quality})"
        if i == active:
            text = f"<b>{text}</b>"
        rows.append(f'<span style="display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});'
                    f'margin-right:0.4em;vertical-align:middle"></span>{text}')
    return "<div class='edge-medsam-legend'>" + "<br>".join(rows) + "</div>"
