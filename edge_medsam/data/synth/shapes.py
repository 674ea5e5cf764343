"""Outlines as (N, 2) arrays of pixel coordinates (x, y): ellipses, irregular blobs, smooth curves."""

from __future__ import annotations

import numpy as np

OUTLINE_POINTS = 64


def irregular_radii(rng: np.random.Generator, roughness: float, harmonics: int = 6,
                    points: int = OUTLINE_POINTS, count: int | None = None) -> np.ndarray:
    """Relative radii around a closed outline: 1 plus a few random low harmonics (amplitude ~ ``roughness``).

    Shape (points,), or (count, points) for ``count`` outlines at once.
    """
    theta = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    orders = np.arange(2, harmonics + 2)
    shape = (1 if count is None else count, len(orders), 1)
    amplitudes = roughness * rng.standard_normal(shape) / np.sqrt(orders - 1)[:, None]
    phases = rng.uniform(0.0, 2.0 * np.pi, shape)
    radii = np.clip(1.0 + (amplitudes * np.cos(orders[:, None] * theta + phases)).sum(axis=1), 0.35, 1.8)
    return radii[0] if count is None else radii


def spiculated_radii(rng: np.random.Generator, spikes: int, length: float, points: int = 4 * OUTLINE_POINTS,
                     roughness: float = 0.1) -> np.ndarray:
    """Relative radii of a mass with ``spikes`` thin spicules of relative ``length`` (a malignant-looking margin)."""
    radii = irregular_radii(rng, roughness, 5, points)
    theta = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    for angle, reach in zip(rng.uniform(0, 2 * np.pi, spikes), rng.uniform(0.3, 1.0, spikes) * length, strict=True):
        gap = np.angle(np.exp(1j * (theta - angle)))
        radii += reach * np.exp(-((gap / 0.035) ** 2))
    return radii


def blob(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0,
         radii: np.ndarray | None = None) -> np.ndarray:
    """Outline of an ellipse (semi-axes rx, ry, rotated by ``angle`` radians), its radii scaled by ``radii``."""
    scale = np.ones((1, OUTLINE_POINTS)) if radii is None else np.asarray(radii)[None]
    return blobs(np.array([[cx, cy]]), np.array([rx]), np.array([ry]), np.array([angle]), scale)[0]


def blobs(centres: np.ndarray, rx: np.ndarray, ry: np.ndarray, angles: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Many outlines at once: (N, P, 2) from N centres, semi-axes, angles and (N, P) relative radii."""
    theta = np.linspace(0.0, 2.0 * np.pi, radii.shape[1], endpoint=False)
    x = rx[:, None] * radii * np.cos(theta)
    y = ry[:, None] * radii * np.sin(theta)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    return np.stack([centres[:, :1] + cos * x - sin * y, centres[:, 1:] + sin * x + cos * y], axis=2)


def catmull_rom(points: np.ndarray, steps: int = 8, closed: bool = False) -> np.ndarray:
    """A smooth curve through control points (N, 2), ``steps`` samples per span."""
    pts = np.asarray(points, np.float64)
    if closed:
        ext = np.concatenate([pts[-1:], pts, pts[:2]])
    else:
        ext = np.concatenate([2 * pts[:1] - pts[1:2], pts, 2 * pts[-1:] - pts[-2:-1]])
    t = np.linspace(0.0, 1.0, steps, endpoint=False)[None, :, None]
    p0, p1, p2, p3 = (ext[i:len(ext) - 3 + i, None, :] for i in range(4))
    curve = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                   + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
    curve = curve.reshape(-1, 2)
    return curve if closed else np.concatenate([curve, pts[-1:]])


def wandering_path(rng: np.random.Generator, start: tuple[float, float], heading: float, step: float, steps: int,
                   wobble: float, drift: float = 0.0) -> np.ndarray:
    """A random walk with inertia: ``steps`` points, turning by ``drift`` + N(0, wobble) radians each step."""
    turns = drift + wobble * rng.standard_normal(steps)
    headings = heading + np.cumsum(turns)
    moves = step * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    return np.concatenate([np.array([start], np.float64), start + np.cumsum(moves, axis=0)])


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as broadcastable float32 arrays: x of shape (1, S), y of shape (S, 1)."""
    axis = np.arange(size, dtype=np.float32) + np.float32(0.5)
    return axis[None, :], axis[:, None]
