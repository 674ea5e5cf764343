"""The demo under load on this machine: 8 gradio_client sessions x 50 requests at once, then hostile upload names.

Each client uploads its own picture and then clicks, undoes, draws boxes and downloads; every answer must be
about that client's picture and prompts (no state mixed between sessions), no request may fail, the server's
memory must level off, and when the demo stops its scratch files must be gone. Uploads whose names try to leave
the upload folder must land inside it. Everything is served on 127.0.0.1 only.
"""

from __future__ import annotations

import gc
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_image_annotation")
pytest.importorskip("gradio_client")

import httpx
import psutil
from demo_server import corpus_picture
from gradio_client import Client, handle_file
from runtime_bundle import cached_bundle

from edge_medsam.apps.demo import DemoConfig, DemoEngine, demo_app
from edge_medsam.apps.demo.document import PNG
from edge_medsam.apps.demo.export import FILE_NAMES
from edge_medsam.io import read_mask

pytestmark = pytest.mark.timeout(300, func_only=True)
CLIENTS, REQUESTS = 8, 50
LOOK = (0.45, False)  # opacity, contours
CYCLE = ("click", "click", "undo", "box", "download")
MB = 2**20


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The test bundle, found or built before the sandbox below redirects the temporary folder."""
    return cached_bundle()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Private temporary folders for the server (Python's tempfile, Gradio's cache) and for the clients."""
    folders = {name: tmp_path / name for name in ("tmp", "gradio", "clients")}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folders["tmp"]))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folders["gradio"]))
    return folders


def details(result: tuple) -> dict:
    return next(item for item in result if isinstance(item, dict) and "objects" in item)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


class Visitor:
    """One browser session's worth of requests, checking every answer against what this session did."""

    def __init__(self, url: str, index: int, picture: Path, side: int, downloads: Path):
        self.client = Client(url, verbose=False, download_files=False)  # only the mask downloads are fetched
        self.index, self.picture, self.side, self.downloads = index, picture, side, downloads
        self.points: list[list[float]] = []
        self.box: list[float] | None = None
        self.sent = 0
        self.latency_ms: list[float] = []

    def call(self, *args, api_name: str) -> tuple:
        start = time.perf_counter()
        result = self.client.predict(*args, api_name=api_name)
        self.latency_ms.append((time.perf_counter() - start) * 1e3)
        self.sent += 1
        return result

    def check(self, result: tuple) -> dict:
        shown = details(result)
        assert shown["input"] == f"PNG {self.side}x{self.side}", shown["input"]  # this session's upload, no other
        (obj,) = shown["objects"]
        assert obj["points"] == self.points and obj["box"] == self.box, (self.index, obj, self.points, self.box)
        return shown

    def load(self) -> None:
        self.check(self.call([handle_file(str(self.picture))], "auto", "soft_tissue", 40, 400, *LOOK,
                             api_name="/load"))

    def step(self, number: int) -> None:
        action = CYCLE[number % len(CYCLE)]
        if action == "click":
            x, y = float((7 * number + 3 * self.index) % self.side), float((5 * number + self.index) % self.side)
            positive = len(self.points) % 2 == 0
            self.points.append([x, y, int(positive)])
            self.check(self.call(x, y, "foreground (+)" if positive else "background (−)", *LOOK, api_name="/click"))
        elif action == "undo":
            self.points.pop()
            self.check(self.call(*LOOK, api_name="/undo"))
        elif action == "box":
            low, high = float(2 + self.index), float(self.side - 3 - number % 7)
            self.box = [low, low, high, high]
            self.check(self.call(low, low, high, high, *LOOK, api_name="/box"))
        else:
            result = self.call(PNG, False, *LOOK, api_name="/download")
            shown = self.check(result)
            saved = self.downloads / f"{self.index}-{number}.png"
            saved.write_bytes(httpx.get(result[0]["url"], timeout=60).raise_for_status().content)
            mask = read_mask(saved)
            assert mask.shape == (self.side, self.side) and int(mask.sum()) == shown["objects"][0]["pixels"]

    def run(self, first: int, last: int) -> None:
        for number in range(first, last):
            if number == 0:
                self.load()
            else:
                self.step(number)


def test_eight_sessions_of_fifty_requests_at_once_keep_their_state_and_leave_nothing_behind(
        bundle: Path, sandbox: dict[str, Path], tmp_path: Path) -> None:
    pictures = [corpus_picture(tmp_path, "dermoscopy", seed=i, size=48 + 8 * i, name=f"client{i}.png")[0]
                for i in range(CLIENTS)]
    engine = DemoEngine.open(bundle, backend="onnxruntime", threads=1)
    server = psutil.Process()
    with demo_app(engine, DemoConfig(), examples=False) as app:
        app.launch(prevent_thread_lock=True, quiet=True)
        try:
            visitors = [Visitor(app.blocks.local_url, i, picture, 48 + 8 * i, sandbox["clients"])
                        for i, picture in enumerate(pictures)]
            with ThreadPoolExecutor(CLIENTS) as pool:
                # Two halves: memory after the first is the baseline the second must not grow from much.
                list(pool.map(lambda v: v.run(0, REQUESTS // 2), visitors))
                gc.collect()
                warmed = server.memory_info().rss
                list(pool.map(lambda v: v.run(REQUESTS // 2, REQUESTS), visitors))
            gc.collect()
            grown = server.memory_info().rss - warmed
            sessions = [p for p in sandbox["tmp"].glob("edge-medsam-demo-*/sessions/*") if p.is_dir()]
            session_files = {p.name for folder in sessions for p in folder.iterdir()}
        finally:
            app.blocks.close()
    assert [v.sent for v in visitors] == [REQUESTS] * CLIENTS
    # Each session downloaded into its own server folder, under the demo's fixed file name only.
    assert len(sessions) == CLIENTS and session_files == {FILE_NAMES[PNG]}
    # A leak of one shown image (480 x 480 x 3) per request would add 140 MB here; seen: 8-25 MB of noise.
    assert grown < 96 * MB, f"memory grew by {grown / MB:.0f} MB over the second {CLIENTS * REQUESTS // 2} requests"
    latencies = np.concatenate([v.latency_ms for v in visitors])
    assert np.percentile(latencies, 95) < 30_000  # queued behind 7 others on a loaded machine, never stuck
    assert not files_under(sandbox["tmp"]), files_under(sandbox["tmp"])  # the demo's scratch went with it
    # Gradio drops what the app wrote (shown images, downloads) when it stops; the uploads themselves may stay.
    assert len(files_under(sandbox["gradio"])) <= CLIENTS, files_under(sandbox["gradio"])


def _upload(url: str, name: str, content: bytes) -> str | None:
    """POST one file to Gradio's upload route under an arbitrary (hostile) file name; the stored path, or None
    when the server refuses the name."""
    response = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files=[("files", (name, content, "image/png"))],
                          timeout=60)
    if response.status_code == 400:
        return None
    response.raise_for_status()
    (stored,) = response.json()
    return stored


def test_upload_names_never_become_paths(bundle: Path, sandbox: dict[str, Path], tmp_path: Path) -> None:
    picture, _ = corpus_picture(tmp_path, "dermoscopy", seed=1, size=64)
    content = picture.read_bytes()
    hostile = ["../../../escaped.png", "..\\..\\escaped.png", "/etc/escaped.png", "sub/../../escaped.png",
               "%2e%2e%2fescaped.png", ".", "..", "escaped.png\x00.txt"]
    engine = DemoEngine.open(bundle, backend="onnxruntime", threads=1)
    with demo_app(engine, DemoConfig(), examples=False) as app:
        app.launch(prevent_thread_lock=True, quiet=True)
        try:
            url = app.blocks.local_url
            client = Client(url, verbose=False, download_files=str(sandbox["clients"]))
            uploads = sandbox["gradio"].resolve()
            accepted = 0
            for name in hostile:
                stored = _upload(url, name, content)
                if stored is None:
                    continue
                accepted += 1
                stored = Path(stored).resolve()
                assert stored.is_relative_to(uploads), (name, stored)
                shown = details(client.predict([{"path": str(stored), "orig_name": name,
                                                 "meta": {"_type": "gradio.FileData"}}],
                                               "auto", "soft_tissue", 40, 400, *LOOK, api_name="/load"))
                assert shown["input"] == "PNG 64x64"
                downloaded = Path(client.predict(PNG, False, *LOOK, api_name="/download")[0])
                assert downloaded.name == FILE_NAMES[PNG]
        finally:
            app.blocks.close()
    assert accepted >= len(hostile) - 3  # most are stored under a safe name; the rest refused outright
    written = [*tmp_path.rglob("*escaped*"), *Path.cwd().rglob("*escaped*"), *Path("/etc").glob("*escaped*")]
    assert not [p for p in written if not p.resolve().is_relative_to(uploads)]
