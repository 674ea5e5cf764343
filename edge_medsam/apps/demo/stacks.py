"""A document seen as a stack of 2D views: a picture is a stack of one, a volume is sliced along a plane.

Both kinds answer the same questions as the runtime's VolumeSegmenter (which serves volumes here):
``count``, ``plan``, ``slice_image(index)``, ``encoded(index)`` (cached) and ``cache.misses``.
"""

from __future__ import annotations

import numpy as np

from edge_medsam.apps.demo.document import Document
from edge_medsam.io import Image2D, Volume, slice_volume
from edge_medsam.runtime.images import ModalityLike, WindowLike, normalise_image, plan_modality
from edge_medsam.runtime.predictor import EncodedImage, Predictor
from edge_medsam.runtime.volume import EmbeddingCache, VolumeSegmenter

PICTURE = "image"  # the plane name of a 2D picture's only view
MIN_SIDE = 8  # planes whose slices are thinner than this are not offered (a 3-slice stack seen from the side)


class PictureStack:
    """A 2D picture as a one-view stack, encoded once."""

    count = 1

    def __init__(self, predictor: Predictor, image: Image2D, modality: ModalityLike, window: WindowLike):
        self.predictor = predictor
        self.image = image
        self.window = window
        self.plan = plan_modality(image, modality, predictor.bundle)
        self.cache = EmbeddingCache(1)

    def slice_image(self, index: int) -> Image2D:
        """The picture (there is only view 0)."""
        return self.image

    def encoded(self, index: int) -> EncodedImage:
        """The picture's encoder outputs, computed on first use."""
        return self.cache.get(0, lambda: self.predictor.encode(self.image, window=self.window, plan=self.plan))


Stack = PictureStack | VolumeSegmenter


def planes(volume: Volume) -> list[str]:
    """The volume's viewing planes, the acquisition plane (normal to the third array axis) first."""
    found: dict[str, tuple[int, int]] = {}
    for axis in (2, 0, 1):
        probe = slice_volume(volume, axis, 0)
        found[probe.meta["slice"]["plane"]] = probe.shape
    return [name for name, shape in found.items() if min(shape) >= MIN_SIDE] or list(found)[:1]


def open_stack(predictor: Predictor, document: Document, plane: str, modality: ModalityLike, window: WindowLike,
               cache_size: int) -> Stack:
    """The stack of views of a document along ``plane`` (PICTURE for a 2D picture)."""
    if document.volume is None:
        assert document.image is not None
        return PictureStack(predictor, document.image, modality, window)
    return VolumeSegmenter(predictor, document.volume, axis=plane, modality=modality, window=window,
                           cache_size=cache_size)


def display_pixels(stack: Stack, index: int) -> np.ndarray:
    """The (H, W, 3) uint8 picture of a view exactly as the model sees it (CT windowed, MR/PET normalised)."""
    image01 = normalise_image(stack.slice_image(index), stack.plan, stack.predictor.bundle, stack.window)
    return np.clip(np.rint(image01 * 255.0), 0, 255).astype(np.uint8)
