"""edge-medsam: medical segment-anything models distilled, quantized and packaged for CPUs and Jetson boards.

Importing the package never imports torch; the torch-side modules (models, engine, compress) import it
themselves, so the torch-free runtime stays light.
"""

from edge_medsam.errors import EdgeMedSAMError, InputError

__version__ = "0.1.0"

__all__ = ["EdgeMedSAMError", "InputError", "__version__"]
