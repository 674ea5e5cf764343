"""Synthetic multi-modality corpus: images that look like their modality, with pixel-exact label maps.

The built-in data for tests, the CPU quickstart and the demo. Numpy and Pillow only (volumes are written with
nibabel). Every sample is drawn from two independent random streams spawned from its seed, one for the anatomy
(hence the labels) and one for the appearance, so ``style_shift=True`` draws the same anatomy with another
scanner, stain or camera::

    sample = generate_sample("fundus", 7, size=256)               # SynthSample(pixels, labels, objects, ...)
    shifted = generate_sample("fundus", 7, 256, style_shift=True)  # same labels, other pixels
    write_corpus("corpus", per_modality=20, size=256, seed=0)      # -> corpus/manifest.json
"""

from edge_medsam.data.synth.corpus import HU_OFFSET, write_corpus
from edge_medsam.data.synth.ct import SynthVolume
from edge_medsam.data.synth.generate import SYNTH_MODALITIES, SynthModality, generate_sample, generate_volume
from edge_medsam.data.synth.scene import SynthObject, SynthSample

__all__ = [
    "HU_OFFSET",
    "SYNTH_MODALITIES",
    "SynthModality",
    "SynthObject",
    "SynthSample",
    "SynthVolume",
    "generate_sample",
    "generate_volume",
    "write_corpus",
]
