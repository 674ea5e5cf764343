"""Where SEGs go: uploaded to Orthanc's REST API, stored by STOW-RS in a DICOMweb archive, or sent by C-STORE to a
DICOM node."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import SegmentationStorage

from edge_medsam.serve.config import DestinationSettings
from edge_medsam.serve.dicomweb import DicomwebArchive
from edge_medsam.serve.orthanc import OrthancClient


class StoreFailed(ConnectionError):
    """The destination did not take the SEG (a transient error: the job is retried)."""


class Destination(Protocol):
    def store(self, seg: Path) -> None: ...


class OrthancDestination:
    """POST the SEG to Orthanc's /instances."""

    def __init__(self, client: OrthancClient):
        self.client = client

    def store(self, seg: Path) -> None:
        self.client.upload(seg.read_bytes())


class DicomwebDestination:
    """STOW-RS the SEG to the archive."""

    def __init__(self, archive: DicomwebArchive):
        self.archive = archive

    def store(self, seg: Path) -> None:
        self.archive.store(seg)


class DicomDestination:
    """C-STORE the SEG to ``host:port`` (called AE title ``ae_title``) as ``calling_ae``."""

    def __init__(self, settings: DestinationSettings, calling_ae: str):
        self.settings, self.calling_ae = settings, calling_ae

    def store(self, seg: Path) -> None:
        ae = AE(ae_title=self.calling_ae)
        ae.add_requested_context(SegmentationStorage)
        s = self.settings
        assoc = ae.associate(s.host, s.port, ae_title=s.ae_title)
        if not assoc.is_established:
            raise StoreFailed(f"no association with {s.ae_title} at {s.host}:{s.port}")
        try:
            status = assoc.send_c_store(dcmread(seg))
        finally:
            assoc.release()
        code = getattr(status, "Status", None)
        if code != 0x0000:
            raise StoreFailed(f"{s.ae_title} answered the C-STORE with status {code if code is None else hex(code)}")
