"""A DICOMweb archive, through dicomweb-client: series found by QIDO-RS, instances retrieved by WADO-RS, SEGs
stored by STOW-RS. Any PACS that speaks DICOMweb works (Orthanc with its DICOMweb plugin, dcm4chee, Google/Azure
healthcare APIs behind their own authentication session).

DICOMweb has no change feed: the node polls QIDO-RS for the archive's series and queues a series once its
instance count has stayed the same for ``stable_seconds`` (the queue is idempotent, so re-reading is harmless).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from pydicom import dcmread

from edge_medsam.serve.config import DicomwebSettings
from edge_medsam.serve.rules import SeriesTags

# QIDO-RS attributes the node reads (hex tags as DICOM JSON names them).
STUDY_UID, SERIES_UID, MODALITY = "0020000D", "0020000E", "00080060"
DESCRIPTION, BODY_PART, INSTANCES = "0008103E", "00180015", "00201209"


@dataclass(frozen=True)
class SeriesEntry:
    """One series as QIDO-RS lists it."""

    study_uid: str
    series_uid: str
    tags: SeriesTags
    instances: int

    @property
    def ref(self) -> str:
        """The job's source reference: ``study/series``."""
        return f"{self.study_uid}/{self.series_uid}"


def _value(item: dict, tag: str, default: str = "") -> str:
    values = item.get(tag, {}).get("Value") or [default]
    return str(values[0])


@contextmanager
def _transient_errors(what: str) -> Iterator[None]:
    """The archive down, timing out or answering 5xx becomes ConnectionError (the job is retried); 4xx stays."""
    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as err:
        raise ConnectionError(f"DICOMweb {what}: {type(err).__name__}") from err
    except requests.HTTPError as err:
        status = err.response.status_code if err.response is not None else 0
        if status >= 500:
            raise ConnectionError(f"DICOMweb {what} answered {status}") from err
        raise


class DicomwebArchive:
    """QIDO-RS, WADO-RS and STOW-RS of one archive."""

    def __init__(self, settings: DicomwebSettings):
        session = (create_session_from_user_pass(settings.username, settings.password or "")
                   if settings.username else None)
        self.url = settings.url.rstrip("/")
        self._client = DICOMwebClient(self.url, session=session, timeout=settings.timeout_seconds)

    def series(self) -> list[SeriesEntry]:
        """Every series of the archive with the tags the rules read and its instance count."""
        with _transient_errors("search for series"):
            found = self._client.search_for_series(fields=[DESCRIPTION, BODY_PART, INSTANCES], get_remaining=True)
        return [SeriesEntry(_value(item, STUDY_UID), _value(item, SERIES_UID),
                            SeriesTags(_value(item, MODALITY), _value(item, DESCRIPTION), _value(item, BODY_PART)),
                            int(_value(item, INSTANCES, "0"))) for item in found]

    def retrieve(self, ref: str, folder: Path) -> list[Path]:
        """Write the instances of series ``study/series`` into ``folder``."""
        study_uid, series_uid = ref.split("/", 1)
        with _transient_errors(f"retrieve of series {series_uid}"):
            datasets = self._client.retrieve_series(study_uid, series_uid)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for ds in datasets:
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
        return paths

    def store(self, path: Path) -> None:
        """STOW-RS one instance (storing the same SOP instance again replaces it)."""
        with _transient_errors("store"):
            self._client.store_instances([dcmread(path)])
