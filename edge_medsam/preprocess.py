"""Model-frame geometry and preprocessing in numpy: the one source of the numbers for training and runtime.

An image is resized so its longest side is ``size`` (aspect kept), normalised with the model's mean/std and
zero-padded at the bottom/right to ``size x size`` (SAM's convention); ``resize="stretch"`` instead resizes
straight to ``size x size`` (MedSAM, SAM-Med2D). Resizing is a separable linear map
``out = Wy @ img @ Wx.T`` whose weight matrices are computed here once; the torch side
(``edge_medsam.data.torch_preprocess``) applies the very same matrices, so both agree to float rounding.
Downsampling uses an antialiasing triangle filter, upsampling plain bilinear interpolation (half-pixel centres).

The numpy side applies each matrix through its non-zero band (a few taps per output pixel, float32, no BLAS, so
no thread pool competing with the inference backend): the same weights, summed in another order, so the results
equal the dense products to float32 rounding (tests/test_prepost.py). A grey image given as one channel broadcast
to three (``normalise_intensity`` returns it so) is resized once; logits are resampled straight from the model
frame to the original size, the padded part never touched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from edge_medsam.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPPORTED_SIZES = (256, 512, 1024)
RESIZE_RULES = ("longest_side", "stretch")


@dataclass(frozen=True)
class PreprocessConfig:
    """Input size and normalisation of a model; serialised into the bundle manifest."""

    size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "longest_side"

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 16:
            raise InputError(f"input size {self.size} is not a positive multiple of 16", fix="use 256, 512 or 1024")
        if self.resize not in RESIZE_RULES:
            raise InputError(f"unknown resize rule {self.resize!r}", fix=f"use one of {', '.join(RESIZE_RULES)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for a manifest."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Inverse of to_dict."""
        return cls(size=int(data["size"]), mean=tuple(data["mean"]), std=tuple(data["std"]),
                   resize=data.get("resize", cls.resize))


@dataclass(frozen=True)
class Geometry:
    """Where an original ``height x width`` image sits in the ``size x size`` model frame."""

    height: int
    width: int
    size: int
    keep_aspect: bool = True

    @property
    def scale(self) -> float:
        """Model pixels per original pixel along the longest side."""
        return self.size / max(self.height, self.width)

    @property
    def resized(self) -> tuple[int, int]:
        """(height, width) of the image inside the padded frame."""
        if not self.keep_aspect:
            return self.size, self.size
        return max(1, int(self.height * self.scale + 0.5)), max(1, int(self.width * self.scale + 0.5))

    def points_to_model(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) x/y coordinates from original pixels to the model frame."""
        new_h, new_w = self.resized
        factors = np.array([new_w / self.width, new_h / self.height], np.float32)
        return np.asarray(xy, np.float32) * factors

    def points_to_original(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) x/y coordinates from the model frame back to original pixels."""
        new_h, new_w = self.resized
        factors = np.array([self.width / new_w, self.height / new_h], np.float32)
        return np.asarray(xy, np.float32) * factors

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Map (..., 4) x0, y0, x1, y1 boxes from original pixels to the model frame."""
        boxes = np.asarray(boxes, np.float32)
        return self.points_to_model(boxes.reshape(*boxes.shape[:-1], 2, 2)).reshape(boxes.shape)

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map (..., 4) boxes from the model frame back to original pixels."""
        boxes = np.asarray(boxes, np.float32)
        return self.points_to_original(boxes.reshape(*boxes.shape[:-1], 2, 2)).reshape(boxes.shape)


def geometry_for(height: int, width: int, size: int, keep_aspect: bool = True) -> Geometry:
    """The placement of a height x width image in a size x size frame; rejects degenerate images."""
    if height < 2 or width < 2:
        raise InputError(f"image is {width}x{height} pixels, too small to segment", fix="give at least 2x2 pixels")
    return Geometry(int(height), int(width), int(size), bool(keep_aspect))


@lru_cache(maxsize=256)
def _resize_weights(in_len: int, out_len: int) -> np.ndarray:
    scale = in_len / out_len
    support = max(scale, 1.0)
    centres = (np.arange(out_len, dtype=np.float64) + 0.5) * scale - 0.5
    taps = np.arange(in_len, dtype=np.float64)
    weights = np.clip(1.0 - np.abs(taps[None, :] - centres[:, None]) / support, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    weights.setflags(write=False)
    return weights


def resize_weights(in_len: int, out_len: int) -> np.ndarray:
    """(out_len, in_len) float64 matrix resampling a 1D signal: triangle filter scaled by the shrink factor."""
    return _resize_weights(int(in_len), int(out_len))


@dataclass(frozen=True, eq=False)
class Band:
    """The non-zero band of a resampling matrix: ``out[o] = sum_k weights[o, k] * x[index[o, k]]``."""

    index: np.ndarray  # (out_len, taps) int64
    weights: np.ndarray  # (out_len, taps) float32, zero past a row's band

    @classmethod
    def of(cls, matrix: np.ndarray) -> Band:
        """The band of an (out_len, in_len) matrix, its weights rounded to float32 as the dense product uses them."""
        nonzero = matrix != 0
        first = nonzero.argmax(axis=1)
        stop = matrix.shape[1] - nonzero[:, ::-1].argmax(axis=1)
        taps = first[:, None] + np.arange(int((stop - first).max()))
        index = np.minimum(taps, matrix.shape[1] - 1)
        weights = np.where(taps < stop[:, None], np.take_along_axis(matrix, index, axis=1), 0.0).astype(np.float32)
        index.setflags(write=False)
        weights.setflags(write=False)
        return cls(index, weights)

    def apply(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Resample float32 ``x`` along ``axis`` (fast when later axes remain: the taps sum over whole rows)."""
        axis %= x.ndim
        lead, rest = "abcdefgh"[:axis], "pqrstuvw"[: x.ndim - axis - 1]
        gathered = np.take(x, self.index, axis=axis)
        return np.einsum(f"ok,{lead}ok{rest}->{lead}o{rest}", self.weights, gathered)


@lru_cache(maxsize=256)
def resize_band(in_len: int, out_len: int) -> Band:
    """The band of ``resize_weights(in_len, out_len)``."""
    return Band.of(resize_weights(in_len, out_len))


def _nearest_index(in_len: int, out_len: int) -> np.ndarray:
    return np.minimum(((np.arange(out_len) + 0.5) * (in_len / out_len)).astype(np.int64), in_len - 1)


def unpad_weights(geometry: Geometry, in_len: int, axis: int) -> np.ndarray:
    """(original_len, in_len) matrix taking a model-frame axis (at any resolution) to the original axis.

    Composes: upsample in_len → size, crop the unpadded part, resize to the original length.
    """
    original = geometry.height if axis == 0 else geometry.width
    kept = geometry.resized[axis]
    to_frame = resize_weights(in_len, geometry.size)[:kept]
    return resize_weights(kept, original) @ to_frame


@lru_cache(maxsize=256)
def unpad_band(geometry: Geometry, in_len: int, axis: int) -> Band:
    """The band of ``unpad_weights(geometry, in_len, axis)``."""
    return Band.of(unpad_weights(geometry, in_len, axis))


def _resize_transposed(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W[, C]) float32 → (width, height[, C]): rows first on the full image, the transpose on the smaller one."""
    rows = resize_band(img.shape[0], height).apply(img, 0)
    return resize_band(img.shape[1], width).apply(np.ascontiguousarray(rows.swapaxes(0, 1)), 0)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) float image to height x width (float32)."""
    img = np.asarray(image, np.float32)
    return np.ascontiguousarray(_resize_transposed(img, height, width).swapaxes(0, 1))


def to_model_input(image: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, Geometry]:
    """A [0, 1] (H, W, 3) image → the (1, 3, S, S) float32 model input and its geometry.

    Three channels that are one broadcast channel (stride 0, as ``normalise_intensity`` gives grey images) are
    resized once.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"image of shape {img.shape} is not (H, W, 3)", fix="normalise it with normalise_intensity")
    geo = geometry_for(img.shape[0], img.shape[1], config.size, config.resize == "longest_side")
    new_h, new_w = geo.resized
    grey = img.strides[2] == 0
    resized = _resize_transposed(img[..., 0] if grey else img, new_h, new_w)  # (w, h) or (w, h, 3)
    out = np.zeros((1, 3, config.size, config.size), np.float32)
    for channel, (mean, std) in enumerate(zip(config.mean, config.std, strict=True)):
        frame = out[0, channel, :new_h, :new_w]
        np.subtract((resized if grey else resized[..., channel]).T, np.float32(mean), out=frame)
        np.divide(frame, np.float32(std), out=frame)
    return out, geo


def logits_to_original(logits: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Model-frame mask logits (..., h, w) at any square resolution → (..., H, W) in the original geometry.

    Columns first, on the low-resolution side (its transpose is small), then rows, which leaves the result in
    row-major order without a full-size transpose.
    """
    arr = np.asarray(logits, np.float32)
    lead, (low_h, low_w) = arr.shape[:-2], arr.shape[-2:]
    flat = np.ascontiguousarray(arr.reshape(-1, low_h, low_w).swapaxes(1, 2))  # (L, w, h)
    cols = unpad_band(geometry, low_w, 1).apply(flat, 1)  # (L, W, h)
    out = unpad_band(geometry, low_h, 0).apply(np.ascontiguousarray(cols.swapaxes(1, 2)), 1)  # (L, H, W)
    return out.reshape(*lead, geometry.height, geometry.width)


def labels_to_model(labels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """An (H, W) label map → the (S, S) model frame by nearest neighbour, zero in the padding."""
    new_h, new_w = geometry.resized
    rows = _nearest_index(geometry.height, new_h)
    cols = _nearest_index(geometry.width, new_w)
    out = np.zeros((geometry.size, geometry.size), np.asarray(labels).dtype)
    out[:new_h, :new_w] = np.asarray(labels)[rows[:, None], cols[None, :]]
    return out


def labels_to_original(labels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A model-frame (S, S) label map → the original (H, W) by nearest neighbour (exact inverse when upsampled)."""
    new_h, new_w = geometry.resized
    rows = _nearest_index(new_h, geometry.height)
    cols = _nearest_index(new_w, geometry.width)
    return np.asarray(labels)[:new_h, :new_w][rows[:, None], cols[None, :]]
