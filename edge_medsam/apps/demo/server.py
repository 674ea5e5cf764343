"""Start the demo server: open the bundle, write the examples, build the page, serve it."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from edge_medsam.apps.demo.engine import DemoEngine
from edge_medsam.apps.demo.examples import write_examples
from edge_medsam.apps.demo.ui import DemoConfig, build_demo

LOCALHOST = "127.0.0.1"


@dataclass
class DemoApp:
    """A built page and the settings it was built with."""

    blocks: gr.Blocks
    config: DemoConfig

    def launch(self, host: str = LOCALHOST, port: int | None = None, **options: Any) -> Any:
        """Serve the page on host:port (only this machine unless told otherwise) with the upload limit."""
        return self.blocks.launch(server_name=host, server_port=port, ssr_mode=False, show_error=True,
                                  max_file_size=int(self.config.max_upload_mb * 2**20), **options)


@contextmanager
def demo_app(engine: DemoEngine, config: DemoConfig | None = None, *, examples: bool = True) -> Iterator[DemoApp]:
    """The demo with a private scratch folder (sessions' downloads, the examples), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="edge-medsam-demo-") as scratch:
        workdir = Path(scratch)
        config = replace(config or DemoConfig(), examples=write_examples(workdir / "examples") if examples else ())
        yield DemoApp(build_demo(engine, config, workdir / "sessions"), config)


def serve(bundle: str | os.PathLike[str], *, backend: str = "auto", precision: str = "fp32",
          host: str | None = None, port: int | None = None, threads: int | None = None, device: str | None = None,
          max_upload_mb: float = 512.0, max_side: int = 4096, examples: bool = True) -> None:
    """Open the bundle and serve the demo at http://host:port (default 127.0.0.1) until interrupted (blocks)."""
    host = host or LOCALHOST
    if host != LOCALHOST:
        print(f"edge-medsam: serving on {host}: anyone who can reach this machine can use the demo (there is no "
              "login); keep patient data off untrusted networks", file=sys.stderr)
    engine = DemoEngine.open(bundle, backend, precision, threads=threads, device=device)
    base = DemoConfig()
    config = replace(base, max_upload_mb=max_upload_mb,
                     limits=replace(base.limits, max_side=max_side, max_pixels=max_side * max_side))
    with demo_app(engine, config, examples=examples) as app:
        app.launch(host, port)
