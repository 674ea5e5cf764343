"""A real Orthanc for the serve tests (Debian's /usr/sbin/Orthanc on localhost, temporary storage, free ports),
synthetic CT series, and a node run in a thread or in a subprocess.

Orthanc missing: the tests skip, except under CI=true, where they fail (CI installs it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
import yaml

from edge_medsam.data.synth import generate_volume
from edge_medsam.io import Volume, write_dicom_series
from edge_medsam.serve.config import NodeSettings, load_settings
from edge_medsam.serve.jobs import JobQueue
from edge_medsam.serve.node import run_node

ORTHANC = Path(os.environ.get("EDGE_MEDSAM_ORTHANC", "/usr/sbin/Orthanc"))
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")  # Debian's orthanc-dicomweb
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Orthanc:
    """One Orthanc process; ``stop()`` and ``start()`` keep its storage and ports. ``dicomweb``: with its DICOMweb
    plugin at ``/dicom-web``."""

    def __init__(self, root: Path, dicomweb: bool = False):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = {"Name": "edge-medsam-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
                  "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": "ORTHANC",
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "StableAge": 1, "Plugins": [],
                  "SaveJobs": False, "ConcurrentJobs": 1, "HttpThreadsCount": 8}
        if dicomweb:
            config |= {"Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen([str(ORTHANC), str(self.config)], stdout=subprocess.DEVNULL,
                                         stderr=(self.root / "orthanc.log").open("ab"))

        def up() -> bool:
            try:
                return self.http.get("/system").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 30, "Orthanc's /system")

    def stop(self, *, kill: bool = False) -> None:
        """Shut Orthanc down (SIGTERM, as an administrator would), or ``kill`` it at the end of a test."""
        if self._process is not None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()
            self._process.wait(30)
            self._process = None

    def upload(self, paths: list[Path]) -> None:
        for path in paths:
            self.http.post("/instances", content=path.read_bytes()).raise_for_status()

    def segs(self) -> list[pydicom.Dataset]:
        """Every SEG instance in the archive."""
        found = self.http.post("/tools/find", json={"Level": "Instance", "Query": {"Modality": "SEG"}}).json()
        return [pydicom.dcmread(io.BytesIO(self.http.get(f"/instances/{i}/file").content)) for i in found]

    def series_count(self) -> int:
        return len(self.http.get("/series").json())


def _require(path: Path, package: str) -> None:
    """Skip without the Debian package, except under CI=true, where it fails (CI installs it)."""
    if not path.is_file():
        message = f"{path} is missing; apt-get install {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(name="orthanc")
def orthanc_server(tmp_path: Path) -> Iterator[Orthanc]:
    """A running Orthanc of its own for one test."""
    _require(ORTHANC, "orthanc")
    server = Orthanc(tmp_path / "orthanc")
    server.start()
    yield server
    server.stop(kill=True)
    server.http.close()


def ct_series(folder: Path, *, slices: int = 6, size: int = 64, seed: int = 0, description: str = "synthetic CT"
              ) -> list[Path]:
    """A synthetic CT series (Hounsfield units, a bright object) written as DICOM files."""
    synth = generate_volume(seed, size=size, slices=slices)
    return write_dicom_series(folder, Volume(synth.hounsfield.astype(np.float32), synth.affine, hounsfield=True),
                              series_description=description)


def series_uid(paths: list[Path]) -> str:
    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)


def write_config(root: Path, orthanc: Orthanc | None, **overrides: Any) -> Path:
    """A node config (tiny timings) in ``root``; ``overrides`` replace top-level keys."""
    config: dict[str, Any] = {
        "queue": "queue.sqlite", "storage": "storage", "log": "node.jsonl", "backend": "onnxruntime", "threads": 1,
        "workers": 1, "lease_seconds": 3, "retry_seconds": 0.3, "max_attempts": 10,
        "health_port": free_port(),
    }
    if orthanc is not None:
        config["orthanc"] = {"url": orthanc.url, "poll_seconds": 0.2, "timeout_seconds": 5}
    config.update(overrides)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def running_node(config: Path) -> Iterator[dict[str, Any]]:
    """The node of ``config`` in a thread of this process, stopped on exit."""
    settings = load_settings(config)
    stop = threading.Event()
    addresses: dict[str, Any] = {}
    ready = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_node(settings, stop, ready=lambda a: (addresses.update(a), ready.set()))
        except BaseException as err:  # shown by the test, not lost in the thread
            errors.append(err)
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    ready.wait(60)
    if errors:
        raise errors[0]
    try:
        yield addresses
    finally:
        stop.set()
        thread.join(60)
    if errors:
        raise errors[0]


def node_process(config: Path, *extra: str) -> subprocess.Popen:
    """``edge-medsam serve run --config`` as a child process."""
    return subprocess.Popen([sys.executable, "-m", "edge_medsam", "serve", "run", "--config", str(config), *extra],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def queue_of(config: Path) -> JobQueue:
    settings: NodeSettings = load_settings(config)
    return JobQueue(settings.queue)


def states(queue: JobQueue) -> dict[str, str]:
    return {row["series_uid"]: row["state"] for row in queue.rows()}


def all_finished(queue: JobQueue, uids: list[str]) -> bool:
    current = states(queue)
    return all(current.get(uid) in ("done", "failed", "skipped") for uid in uids)


def copy_files(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, folder / p.name)) for p in paths]


@pytest.fixture(name="orthanc_dicomweb")
def orthanc_dicomweb_server(tmp_path: Path) -> Iterator[Orthanc]:
    """A running Orthanc with its DICOMweb plugin, for one test."""
    _require(ORTHANC, "orthanc")
    _require(DICOMWEB_PLUGIN, "orthanc-dicomweb")
    server = Orthanc(tmp_path / "orthanc", dicomweb=True)
    server.start()
    yield server
    server.stop(kill=True)
    server.http.close()
