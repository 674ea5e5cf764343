"""The node's C-STORE receiver: an allowed AE title's series is received, segmented and its SEG sent by C-STORE
to a real Orthanc; a foreign AE title is refused; the same series sent again gets no second SEG."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from serve_harness import (
    Orthanc,
    ct_series,
    free_port,
    orthanc_server,  # noqa: F401 (the fixture)
    queue_of,
    running_node,
    series_uid,
    states,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


def _send(paths: list[Path], port: int, calling: str) -> list[int] | None:
    """C-STORE every file as ``calling``; the statuses, or None when the association is refused."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGEMEDSAM")
    if not assoc.is_established:
        assert assoc.is_rejected
        return None
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(p)).Status) for p in paths]
    finally:
        assoc.release()


def test_an_allowed_ae_title_is_segmented_and_a_foreign_one_refused(orthanc: Orthanc, tmp_path: Path) -> None:
    from runtime_bundle import cached_bundle

    port = free_port()
    config = write_config(
        tmp_path / "node", None, bundle=str(cached_bundle()),
        scp={"ae_title": "EDGEMEDSAM", "port": port, "allowed_ae_titles": ["MODALITY"], "stable_seconds": 1},
        destination={"kind": "dicom", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": "ORTHANC"})
    paths = ct_series(tmp_path / "ct", slices=4, seed=21)
    uid = series_uid(paths)
    with running_node(config) as addresses:
        assert addresses["scp"] == ("127.0.0.1", port)  # localhost unless configured
        assert _send(paths, port, "INTRUDER") is None
        assert _send(paths, port, "MODALITY") == [0] * len(paths)
        queue = queue_of(config)
        wait_for(lambda: states(queue).get(uid) == "done", 60, "the SEG stored by C-STORE")
        assert _send(paths, port, "MODALITY") == [0] * len(paths)  # sent again: taken, not segmented again
        wait_for(lambda: not queue.rows("received"), 10, "nothing left receiving")
    assert [r["state"] for r in queue.rows()] == ["done"]
    assert not (tmp_path / "node" / "storage" / "received" / uid).exists()
    (ds,) = orthanc.segs()
    seg = hd.seg.Segmentation.from_dataset(ds)
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == uid
    referenced = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
    log = (tmp_path / "node" / "node.jsonl").read_text()
    assert '"event":"association_rejected"' in log and "INTRUDER" in log
