"""Where a job's series is read from: Orthanc or a DICOMweb archive (pulled into a scratch folder), or the C-STORE
storage folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from pydicom import dcmread

from edge_medsam.errors import InputError
from edge_medsam.serve.dicomweb import DicomwebArchive
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


class DicomwebSource:
    """Series retrieved by WADO-RS (reference ``study/series``)."""

    def __init__(self, archive: DicomwebArchive):
        self.archive = archive

    def open(self, ref: str, scratch: Path) -> tuple[SeriesTags, Path]:
        folder = scratch / "series"
        paths = self.archive.retrieve(ref, folder)
        if not paths:
            raise InputError(f"the archive returned no instance of series {ref.split('/', 1)[1]}",
                             path=self.archive.url, fix="check that the series is still in the archive")
        return _tags(paths[0]), folder

    def release(self, ref: str) -> None:
        """The archive keeps the series; nothing to do."""


def _tags(path: Path) -> SeriesTags:
    header = dcmread(path, stop_before_pixels=True)
    return SeriesTags(str(header.get("Modality", "")), str(header.get("SeriesDescription", "")),
                      str(header.get("BodyPartExamined", "")))


class ReceivedSource:
    """Series the C-STORE receiver wrote, one folder each."""

    def open(self, ref: str, scratch: Path) -> tuple[SeriesTags, Path]:
        folder = Path(ref)
        files = sorted(folder.glob("*.dcm"))
        if not files:
            raise InputError("no instance of the series is left in the storage folder", path=folder,
                             fix="send the series again")
        return _tags(files[0]), folder

    def release(self, ref: str) -> None:
        shutil.rmtree(ref, ignore_errors=True)
