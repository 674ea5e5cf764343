"""The PACS node against an archive that speaks DICOMweb (a real Orthanc with its DICOMweb plugin): series found by
QIDO-RS once stable, retrieved by WADO-RS, SEGs stored by STOW-RS, and the archive down meaning retries."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pytest
from serve_harness import (
    Orthanc,
    all_finished,
    ct_series,
    orthanc_dicomweb_server,  # noqa: F401 (the fixture)
    queue_of,
    running_node,
    series_uid,
    states,
    wait_for,
    write_config,
)

from edge_medsam.serve.config import DicomwebSettings
from edge_medsam.serve.dicomweb import DicomwebArchive

pytestmark = pytest.mark.timeout(180)


def test_a_dicomweb_archive_gets_a_seg_for_each_new_series(orthanc_dicomweb: Orthanc, tmp_path: Path) -> None:
    from runtime_bundle import cached_bundle

    first, second = ct_series(tmp_path / "a", slices=4, seed=1), ct_series(tmp_path / "b", slices=3, seed=2)
    orthanc_dicomweb.upload(first)
    config = write_config(tmp_path / "node", None, bundle=str(cached_bundle()),
                          dicomweb={"url": f"{orthanc_dicomweb.url}/dicom-web", "poll_seconds": 0.2,
                                    "stable_seconds": 0.5, "timeout_seconds": 5},
                          destination={"kind": "dicomweb"})
    with running_node(config):
        queue = queue_of(config)
        wait_for(lambda: all_finished(queue, [series_uid(first)]), 120, "the first SEG")
        orthanc_dicomweb.upload(second)  # arrives while the node runs
        wait_for(lambda: all_finished(queue, [series_uid(second)]), 120, "the second SEG")
    assert states(queue) == {series_uid(first): "done", series_uid(second): "done"}  # its own SEGs not queued
    segs = {str(s.ReferencedSeriesSequence[0].SeriesInstanceUID): s
            for s in map(hd.seg.Segmentation.from_dataset, orthanc_dicomweb.segs())}
    assert sorted(segs) == sorted([series_uid(first), series_uid(second)])
    referenced = {str(i.ReferencedSOPInstanceUID) for i in segs[series_uid(second)].ReferencedSeriesSequence[0]
                  .ReferencedInstanceSequence}
    assert len(referenced) == 3


def test_the_archive_down_is_a_connection_error_the_worker_retries(tmp_path: Path) -> None:
    from serve_harness import free_port

    archive = DicomwebArchive(DicomwebSettings(url=f"http://127.0.0.1:{free_port()}/dicom-web", timeout_seconds=2))
    with pytest.raises(ConnectionError, match="DICOMweb search for series"):
        archive.series()
    with pytest.raises(ConnectionError, match="DICOMweb store"):
        archive.store(ct_series(tmp_path / "ct", slices=1)[0])
