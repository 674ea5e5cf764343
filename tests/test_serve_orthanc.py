"""The PACS node against a real Orthanc: series uploaded, the node follows the change feed, SEGs read back with
highdicom (references, frames, segment labels, algorithm identification); and the faults: Orthanc down mid-run,
the worker SIGKILLed, a series sent twice, a corrupt instance, 500 slices, 20 series at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import highdicom as hd
import httpx
import pydicom
import pydicom.data
import pytest
from serve_harness import (
    Orthanc,
    all_finished,
    ct_series,
    node_process,
    orthanc_server,  # noqa: F401 (the fixture)
    queue_of,
    running_node,
    series_uid,
    states,
    wait_for,
    write_config,
)

from edge_medsam.runtime.bundle import DEMO_BUNDLE
from edge_medsam.runtime.manifest import MANIFEST, sha256_file

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def tiny_bundle() -> Path:
    """The tests' tiny student bundle (fast on two cores); the demo bundle is used where the model matters."""
    from runtime_bundle import cached_bundle

    return cached_bundle()


def _segs_by_source(orthanc: Orthanc) -> dict[str, list[hd.seg.Segmentation]]:
    found: dict[str, list[hd.seg.Segmentation]] = {}
    for ds in orthanc.segs():
        seg = hd.seg.Segmentation.from_dataset(ds)
        source = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
        found.setdefault(source, []).append(seg)
    return found


def _check_seg(seg: hd.seg.Segmentation, paths: list[Path], bundle: Path) -> None:
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    referenced = {str(item.ReferencedSOPInstanceUID) for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(ds.SOPInstanceUID) for ds in sources}
    assert str(seg.StudyInstanceUID) == str(sources[0].StudyInstanceUID)
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    frames = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in sources], combine_segments=True)
    assert frames.shape == (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "foreground"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (manifest["name"], manifest["version"])
    assert f"bundle_sha256={sha256_file(bundle / MANIFEST)}" in algorithm.AlgorithmParameters


def test_synthetic_and_real_series_get_their_segs(orthanc: Orthanc, tmp_path: Path) -> None:
    synthetic = ct_series(tmp_path / "ct", slices=5, seed=1)
    real = [Path(pydicom.data.get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm")]
    orthanc.upload(synthetic + real)
    config = write_config(tmp_path / "node", orthanc)
    expected = {series_uid(synthetic): synthetic, **{series_uid([p]): [p] for p in real}}
    with running_node(config) as addresses:
        queue = queue_of(config)
        wait_for(lambda: all_finished(queue, list(expected)), 120, "three SEGs")
        health = httpx.get(f"http://127.0.0.1:{addresses['health'][1]}/health").json()
        status = httpx.get(f"http://127.0.0.1:{addresses['health'][1]}/status").json()
    assert health["status"] == "ok" and health["bundle_sha256"] == sha256_file(DEMO_BUNDLE / MANIFEST)
    assert states(queue) == dict.fromkeys(expected, "done")
    assert status["counts"]["done"] == 3 and status["throughput"]["done_last_hour"] == 3
    segs = _segs_by_source(orthanc)
    assert sorted(segs) == sorted(expected)
    for uid, paths in expected.items():
        (seg,) = segs[uid]
        _check_seg(seg, paths, DEMO_BUNDLE)
    # The node's own SEG series came through the change feed too and were left alone; the log names no patient.
    log = (tmp_path / "node" / "node.jsonl").read_text()
    names = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientName) for p in (*synthetic, *real)}
    ids = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in (*synthetic, *real)}
    assert not [word for word in names | ids if word and word in log]
    assert all(json.loads(line)["event"] for line in log.splitlines())


def test_orthanc_stopped_mid_run_and_restarted_loses_nothing(orthanc: Orthanc, tmp_path: Path,
                                                             tiny_bundle: Path) -> None:
    paths = ct_series(tmp_path / "ct", slices=30, seed=2)
    orthanc.upload(paths)
    config = write_config(tmp_path / "node", orthanc, bundle=str(tiny_bundle))
    uid = series_uid(paths)
    with running_node(config):
        queue = queue_of(config)
        wait_for(lambda: states(queue).get(uid) == "segmenting", 60, "the job to start")
        orthanc.stop()  # the pull may be done; the store certainly fails
        wait_for(lambda: (queue.rows()[0]["reason"] or "") and states(queue)[uid] == "queued", 60, "a retry")
        orthanc.start()
        wait_for(lambda: all_finished(queue, [uid]), 90, "the SEG after the restart")
    (row,) = queue.rows()
    assert row["state"] == "done" and row["attempts"] >= 2
    assert len(_segs_by_source(orthanc)[uid]) == 1


def test_a_worker_killed_between_receiving_and_storing_is_replaced_after_its_lease(orthanc: Orthanc, tmp_path: Path,
                                                                                   tiny_bundle: Path) -> None:
    paths = ct_series(tmp_path / "ct", slices=30, seed=3)
    orthanc.upload(paths)
    config = write_config(tmp_path / "node", orthanc, bundle=str(tiny_bundle), lease_seconds=2)
    uid = series_uid(paths)
    queue = queue_of(config)
    first = node_process(config)
    try:
        wait_for(lambda: states(queue).get(uid) == "segmenting", 60, "the job to start")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    assert states(queue)[uid] == "segmenting" and not _segs_by_source(orthanc)
    second = node_process(config, "--workers-only")
    try:
        wait_for(lambda: all_finished(queue, [uid]), 90, "the job retaken after the lease")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.stderr.read().decode()
    (row,) = queue.rows()
    assert row["state"] == "done" and row["attempts"] == 2
    assert len(_segs_by_source(orthanc)[uid]) == 1


def test_the_same_series_sent_twice_gets_one_seg(orthanc: Orthanc, tmp_path: Path, tiny_bundle: Path) -> None:
    paths = ct_series(tmp_path / "ct", slices=4, seed=4)
    uid = series_uid(paths)
    orthanc.upload(paths)
    config = write_config(tmp_path / "node", orthanc, bundle=str(tiny_bundle))
    with running_node(config):
        queue = queue_of(config)
        wait_for(lambda: all_finished(queue, [uid]), 60, "the first SEG")
        orthanc.upload(paths)  # sent again, and the feed read again from its start (a node that lost its place)
        queue.set_cursor(f"orthanc:{orthanc.url}", 0)
        last = orthanc.http.get("/changes", params={"last": ""}).json()["Last"]
        wait_for(lambda: queue.cursor(f"orthanc:{orthanc.url}") >= last, 30, "the feed read again")
    assert [r["state"] for r in queue.rows() if r["series_uid"] == uid] == ["done"]
    assert len(_segs_by_source(orthanc)[uid]) == 1


def test_a_corrupt_instance_fails_its_series_with_the_reason_and_the_rest_go_on(orthanc: Orthanc, tmp_path: Path,
                                                                              tiny_bundle: Path) -> None:
    bad = ct_series(tmp_path / "bad", slices=5, seed=5)
    broken = pydicom.dcmread(bad[2])
    broken.PixelData = broken.PixelData[:1000]  # a partial transfer
    broken.save_as(bad[2])
    good = ct_series(tmp_path / "good", slices=5, seed=6)
    orthanc.upload(bad + good)
    config = write_config(tmp_path / "node", orthanc, bundle=str(tiny_bundle))
    with running_node(config):
        queue = queue_of(config)
        wait_for(lambda: all_finished(queue, [series_uid(bad), series_uid(good)]), 60, "both series")
    rows = {r["series_uid"]: r for r in queue.rows()}
    failed = rows[series_uid(bad)]
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert "pixel data cannot be decoded" in failed["reason"] and "\n" not in failed["reason"]
    assert rows[series_uid(good)]["state"] == "done"
    assert sorted(_segs_by_source(orthanc)) == [series_uid(good)]


@pytest.mark.timeout(300)  # the runtime's per-slice time dominates: about 100 s on two loaded cores
def test_a_series_of_500_slices(orthanc: Orthanc, tmp_path: Path, tiny_bundle: Path) -> None:
    paths = ct_series(tmp_path / "ct", slices=500, size=64, seed=7)
    orthanc.upload(paths)
    config = write_config(tmp_path / "node", orthanc, bundle=str(tiny_bundle), lease_seconds=5)
    uid = series_uid(paths)
    with running_node(config):
        queue = queue_of(config)
        wait_for(lambda: all_finished(queue, [uid]), 270, "the 500-slice SEG")
    assert queue.rows()[0]["state"] == "done" and queue.rows()[0]["slices"] == 500
    (seg,) = _segs_by_source(orthanc)[uid]
    _check_seg(seg, paths, tiny_bundle)


def test_twenty_series_at_once_with_two_workers(orthanc: Orthanc, tmp_path: Path, tiny_bundle: Path) -> None:
    series = [ct_series(tmp_path / f"ct{i}", slices=3, size=48, seed=10 + i) for i in range(20)]
    orthanc.upload([p for paths in series for p in paths])
    config = write_config(tmp_path / "node", orthanc, bundle=str(tiny_bundle), workers=2)
    uids = [series_uid(paths) for paths in series]
    with running_node(config):
        queue = queue_of(config)
        wait_for(lambda: all_finished(queue, uids), 120, "twenty SEGs")
    assert states(queue) == dict.fromkeys(uids, "done")  # the node's own SEG series are not jobs
    segs = _segs_by_source(orthanc)
    assert sorted(segs) == sorted(uids) and all(len(v) == 1 for v in segs.values())
    for paths in series[:3]:
        _check_seg(segs[series_uid(paths)][0], paths, tiny_bundle)


def test_a_job_retaken_after_its_seg_was_stored_stores_the_same_instance(orthanc: Orthanc, tmp_path: Path,
                                                                         tiny_bundle: Path) -> None:
    paths = ct_series(tmp_path / "ct", slices=3, seed=8)
    orthanc.upload(paths)
    config = write_config(tmp_path / "node", orthanc, bundle=str(tiny_bundle))
    uid = series_uid(paths)
    with running_node(config):
        queue = queue_of(config)
        wait_for(lambda: all_finished(queue, [uid]), 60, "the SEG")
    first_seg = queue.rows()[0]["seg_uid"]
    # As if the worker had been killed after the upload, before it recorded the job as done.
    with sqlite3.connect(queue.path) as db:
        db.execute("UPDATE jobs SET state='storing', owner='killed', lease_until=0")
    with running_node(config):
        wait_for(lambda: all_finished(queue, [uid]), 60, "the job retaken")
    (row,) = queue.rows()
    assert row["state"] == "done" and row["attempts"] == 2 and row["seg_uid"] == first_seg
    (seg,) = _segs_by_source(orthanc)[uid]
    assert str(seg.SOPInstanceUID) == first_seg
