"""Where a job's series is read from: Orthanc (pulled into a scratch folder) or the C-STORE storage folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from pydicom import dcmread

from edge_medsam.errors import InputError
from edge_medsam.serve.orthanc import OrthancClient
from edge_medsam.serve.rules import SeriesTags


class SeriesSource(Protocol):
    def open(self, ref: str, scratch: Path) -> tuple[SeriesTags, Path]:
        """The series' tags and a folder holding its instances (and only them)."""
        ...

    def release(self, ref: str) -> None:
        """The job is over: forget what was kept for it."""
        ...


class OrthancSource:
    """Series pulled from Orthanc by its Orthanc ID."""

    def __init__(self, client: OrthancClient):
        self.client = client

    def open(self, ref: str, scratch: Path) -> tuple[SeriesTags, Path]:
        _, tags, instances = self.client.series(ref)
        folder = scratch / "series"
        for _ in self.client.download(instances, folder):
            pass
        return tags, folder

    def release(self, ref: str) -> None:
        """Orthanc keeps the series; nothing to do."""


class ReceivedSource:
    """Series the C-STORE receiver wrote, one folder each."""

    def open(self, ref: str, scratch: Path) -> tuple[SeriesTags, Path]:
        folder = Path(ref)
        files = sorted(folder.glob("*.dcm"))
        if not files:
            raise InputError("no instance of the series is left in the storage folder", path=folder,
                             fix="send the series again")
        header = dcmread(files[0], stop_before_pixels=True)
        return SeriesTags(str(header.get("Modality", "")), str(header.get("SeriesDescription", "")),
                          str(header.get("BodyPartExamined", ""))), folder

    def release(self, ref: str) -> None:
        shutil.rmtree(ref, ignore_errors=True)
