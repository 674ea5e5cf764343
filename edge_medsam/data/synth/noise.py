"""Noise and smoothing on numpy arrays, fast enough for dozens of images a second (no scipy)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

# Above this sigma a Gaussian is approximated by box-downsampling and bicubic upsampling (much cheaper).
_SEPARABLE_MAX_SIGMA = 2.5


@lru_cache(maxsize=64)
def _upsampler(cells: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Catmull-Rom interpolation from a grid of ``cells`` knots (padded by 2 on each side) onto ``size`` pixels:
    the first of the 4 knots each pixel reads, and the (4, size) weights, scaled to unit norm per pixel so that
    interpolated white noise has unit variance everywhere."""
    position = 2.0 + (np.arange(size) + 0.5) / size * (cells - 1)
    first = np.floor(position).astype(np.intp) - 1
    t = position - np.floor(position)
    t2, t3 = t * t, t * t * t
    weights = np.stack([-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0,
                        -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2])
    weights /= np.sqrt(np.square(weights).sum(axis=0))
    return first, weights.astype(np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: float, aspect: float = 1.0) -> np.ndarray:
    """Unit-variance noise varying over about ``cells`` blobs across the image (float32, size x size).

    ``aspect`` > 1 stretches the blobs horizontally. Separable interpolation in plain numpy (no BLAS, whose
    threads make small products slow and machine-dependent).
    """
    rows = max(2, min(size, round(cells)))
    cols = max(2, min(size, round(cells / aspect)))
    low = rng.standard_normal((rows + 4, cols + 4), dtype=np.float32)
    first, weights = _upsampler(cols, size)
    wide = np.ascontiguousarray(sum(weights[k] * low[:, first + k] for k in range(4)))  # (rows + 4, size): small
    first, weights = _upsampler(rows, size)
    out = weights[0][:, None] * np.take(wide, first, axis=0)
    for k in range(1, 4):
        out += weights[k][:, None] * np.take(wide, first + k, axis=0)
    return out


def fractal_noise(rng: np.random.Generator, size: int, cells: float, octaves: int = 3, aspect: float = 1.0,
                  persistence: float = 0.5) -> np.ndarray:
    """Unit-variance texture: smooth noise summed over octaves, each twice as fine and ``persistence`` as strong."""
    amplitudes = persistence ** np.arange(octaves)
    total = np.zeros((size, size), np.float32)
    for octave, amplitude in enumerate(amplitudes):
        total += np.float32(amplitude) * smooth_noise(rng, size, min(cells * 2**octave, size / 2), aspect)
    return total / np.float32(np.sqrt(np.square(amplitudes).sum()))


def blur(image: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian-like blur of a float (H, W) or channel-first (C, H, W) array over its last two axes.

    ``sigma`` is one value or (rows, columns) in pixels.
    """
    sigmas = (float(sigma), float(sigma)) if np.isscalar(sigma) else tuple(float(v) for v in sigma)  # type: ignore[arg-type]
    out = image.astype(np.float32, copy=False)
    if max(sigmas) > _SEPARABLE_MAX_SIGMA and sigmas[0] == sigmas[1]:
        return _resample_blur(out, sigmas[0])
    for axis, axis_sigma in zip((out.ndim - 2, out.ndim - 1), sigmas, strict=True):
        if axis_sigma <= 0.3:
            continue
        radius = int(np.ceil(2.5 * axis_sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / axis_sigma) ** 2).astype(np.float32)
        taps /= taps.sum()
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        acc = np.zeros_like(out)
        for k, weight in enumerate(taps):
            window = [slice(None)] * out.ndim
            window[axis] = slice(k, k + length)
            acc += weight * padded[tuple(window)]
        out = acc
    return out


def _resample_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur by area-averaging down by ~sigma and bicubic upsampling back; each leading channel separately."""
    if image.ndim == 3:
        return np.stack([_resample_blur(channel, sigma) for channel in image])
    height, width = image.shape
    factor = sigma / 1.2
    small = (max(2, round(width / factor)), max(2, round(height / factor)))
    pic = Image.fromarray(np.ascontiguousarray(image, np.float32))
    return np.array(pic.resize(small, Image.BOX).resize((width, height), Image.BICUBIC), np.float32)


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """White Gaussian noise blurred by ``sigma`` pixels and rescaled to unit variance (a CT kernel's grain)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    if sigma <= 0.3:
        return white
    grain = blur(white, sigma)
    return grain / np.float32(grain.std() + 1e-6)


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise in both channels (MR magnitude images)."""
    real = signal + np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


def speckle(rng: np.random.Generator, size: int, grain: float, aspect: float = 1.0, looks: int = 2) -> np.ndarray:
    """Ultrasound speckle with mean 1: the magnitude of complex white noise seen through a point-spread ``grain``
    pixels tall and ``aspect`` times as wide, averaged over ``looks`` (spatial compounding evens out the nulls)."""
    low = max(2, size // 2)  # drawn at half resolution: four times cheaper, and upsampling adds the missing blur
    field = blur(rng.standard_normal((2 * looks, low, low), dtype=np.float32), (grain / 2, grain * aspect / 2))
    power = np.square(field).reshape(looks, 2, low, low).sum(axis=1)
    magnitude = np.sqrt(power).mean(axis=0)
    full = np.asarray(Image.fromarray(magnitude).resize((size, size), Image.BILINEAR), np.float32)
    return full / np.float32(full.mean() + 1e-6)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip [0, 1] floats to 8 bits."""
    return (np.clip(image, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def colour(rgb: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """A colour shaped (3, 1, 1) to broadcast over channel-first images."""
    return np.asarray(rgb, np.float32).reshape(3, 1, 1)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """A channel-first (3, H, W) float image in [0, 1] as an 8-bit (H, W, 3) picture."""
    return np.ascontiguousarray(to_uint8(image).transpose(1, 2, 0))
