"""Orthanc's REST API, the parts the node uses: the change feed, a series' tags and instances, SEG upload."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from edge_medsam.serve.config import OrthancSettings
from edge_medsam.serve.rules import SeriesTags

TRANSIENT = (httpx.TransportError, httpx.HTTPStatusError)  # archive down, refusing, or answering 5xx


@dataclass(frozen=True)
class StableSeries:
    """A series Orthanc declared stable (no new instance for its StableAge)."""

    seq: int
    orthanc_id: str


class OrthancClient:
    """A client for one Orthanc (a connection pool; safe to share between threads)."""

    def __init__(self, settings: OrthancSettings):
        auth = (settings.username, settings.password or "") if settings.username else None
        self.url = settings.url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, auth=auth, timeout=settings.timeout_seconds)

    def _get(self, path: str, **params: object) -> httpx.Response:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return response

    def system(self) -> dict:
        """GET /system (version, AE title): a liveness probe."""
        return self._get("/system").json()

    def changes(self, since: int, limit: int = 100) -> tuple[list[StableSeries], int, bool]:
        """StableSeries changes after ``since``: (changes, last seq, done)."""
        body = self._get("/changes", since=since, limit=limit).json()
        stable = [StableSeries(int(c["Seq"]), str(c["ID"])) for c in body["Changes"] if c["ChangeType"] == "StableSeries"]
        return stable, int(body["Last"]), bool(body["Done"])

    def series(self, orthanc_id: str) -> tuple[str, SeriesTags, list[str]]:
        """(SeriesInstanceUID, the rules' tags, instance IDs) of a series."""
        body = self._get(f"/series/{orthanc_id}").json()
        tags = body.get("MainDicomTags", {})
        return (str(tags["SeriesInstanceUID"]),
                SeriesTags(str(tags.get("Modality", "")), str(tags.get("SeriesDescription", "")),
                           str(tags.get("BodyPartExamined", ""))),
                [str(i) for i in body["Instances"]])

    def download(self, instance_ids: list[str], folder: Path) -> Iterator[Path]:
        """Write each instance's DICOM file into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        for instance in instance_ids:
            path = folder / f"{instance}.dcm"
            path.write_bytes(self._get(f"/instances/{instance}/file").content)
            yield path

    def upload(self, data: bytes) -> str:
        """POST a DICOM file to /instances; its Orthanc ID (storing the same SOP instance again is a no-op)."""
        response = self._http.post("/instances", content=data, headers={"Content-Type": "application/dicom"})
        response.raise_for_status()
        return str(response.json()["ID"])

    def close(self) -> None:
        self._http.close()
