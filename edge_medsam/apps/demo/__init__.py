"""The browser demo (Gradio 6) on the torch-free runtime: upload, self-prompted mask at once, refine, download.

    edge-medsam demo --bundle bundle/            # http://127.0.0.1:7860

    from edge_medsam.apps.demo import DemoEngine, demo_app
    with demo_app(DemoEngine.open("bundle/")) as app:
        app.launch()                               # blocks; app.blocks is the gr.Blocks

Modules: ``document`` (reading uploads), ``stacks`` (views of a picture or volume), ``session`` (objects,
prompts, undo), ``overlay`` (drawing), ``export`` (PNG / NIfTI / DICOM-SEG), ``ui`` (the page), ``server``.
Names load on first use, so the model-side modules import without Gradio.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# Before Gradio is imported: no usage reports leave the machine (a hospital device, patients' images).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

_LAZY = {
    "DemoEngine": "engine",
    "LOCALHOST": "server",
    "DemoApp": "server",
    "demo_app": "server",
    "serve": "server",
    "DemoConfig": "ui",
    "build_demo": "ui",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edge_medsam.apps.demo.{_LAZY[name]}"), name)
