"""The model side of the demo: one predictor shared by every browser session, used by one request at a time."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from edge_medsam.runtime.bundle import Bundle
from edge_medsam.runtime.images import window_for
from edge_medsam.runtime.predictor import Predictor


@dataclass
class DemoEngine:
    """A Predictor and the lock that serialises its use (its current image is shared state; a CPU runs one
    graph at a time best anyway)."""

    predictor: Predictor
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, bundle: str | os.PathLike[str], backend: str = "auto", precision: str = "fp32", *,
             threads: int | None = None, device: str | None = None,
             cache_dir: str | os.PathLike[str] | None = None) -> DemoEngine:
        """Open a bundle on a backend (see Predictor.from_bundle)."""
        return cls(Predictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads,
                                         device=device, cache_dir=cache_dir))

    @property
    def bundle(self) -> Bundle:
        """The opened bundle."""
        return self.predictor.bundle

    def describe(self) -> dict[str, str]:
        """Bundle name, precision and backend, as the page shows them."""
        return {"bundle": self.bundle.name, "precision": self.predictor.precision,
                "backend": self.predictor.backend.describe()}

    def modalities(self) -> list[str]:
        """The bundle's modality names in index order."""
        return [name for name, _ in sorted(self.bundle.manifest.modalities.items(), key=lambda item: item[1])]

    def windows(self) -> dict[str, tuple[float, float]]:
        """The bundle's CT window presets: name → (centre, width)."""
        presets = self.bundle.manifest.intensity.get("ct_windows", {})
        return {name: (float(value[0]), float(value[1])) for name, value in presets.items()}

    def default_window(self) -> tuple[str | None, tuple[float, float]]:
        """The bundle's default CT window preset name (None if unnamed) and its (centre, width)."""
        name = self.bundle.manifest.intensity.get("default_ct_window")
        return (name if name in self.windows() else None), window_for(self.bundle, None)
