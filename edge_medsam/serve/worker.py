"""A worker: claims jobs from the queue, reads the series, segments it with the bundle (torch-free runtime),
writes a DICOM-SEG that names the bundle (name, version, sha256) and stores it at the destination.

Its SEG's UIDs derive from the SeriesInstanceUID and the bundle's sha256, so a job retaken after a crash
stores the same SOP instance again (the archive keeps one), never a second SEG.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import httpx
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from edge_medsam import __version__
from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.io import read_volume
from edge_medsam.io.dicom_seg import write_dicom_seg
from edge_medsam.runtime.bundle import Bundle
from edge_medsam.runtime.predictor import Predictor
from edge_medsam.runtime.volume import VolumeSegmenter
from edge_medsam.serve.config import Rule
from edge_medsam.serve.jobs import Job, JobQueue, LeaseLost
from edge_medsam.serve.logs import EventLog
from edge_medsam.serve.rules import select_rule
from edge_medsam.serve.sources import SeriesSource
from edge_medsam.serve.store import Destination, StoreFailed


@dataclass(frozen=True)
class Model:
    """The bundle a worker runs, as the SEG names it."""

    bundle: Bundle
    sha256: str

    def algorithm(self) -> hd.AlgorithmIdentificationSequence:
        manifest = self.bundle.manifest
        return hd.AlgorithmIdentificationSequence(
            name=manifest.name, version=manifest.version, family=codes.cid7162.ArtificialIntelligence,
            source=f"edge-medsam {__version__}", parameters={"bundle_sha256": self.sha256})

    def seg_uids(self, series_uid: str) -> tuple[str, str]:
        """(series, SOP instance) UIDs of the SEG this model makes for a series: the same on every attempt."""
        return tuple(generate_uid(entropy_srcs=[series_uid, self.sha256, part]) for part in ("series", "instance"))


def _transient(err: Exception) -> bool:
    """Errors that go away when the archive is back: retried, not failed."""
    if isinstance(err, httpx.HTTPStatusError):
        return err.response.status_code >= 500
    return isinstance(err, (httpx.TransportError, StoreFailed, ConnectionError, TimeoutError))


def _one_line(err: Exception) -> str:
    text = str(err) if isinstance(err, EdgeMedSAMError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


class _Heartbeat:
    """Renews a job's lease every third of its length while the worker holds it (a lost lease shows when the
    worker next records a state: LeaseLost)."""

    def __init__(self, queue: JobQueue, job: Job):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(queue, job), daemon=True)
        self._thread.start()

    def _beat(self, queue: JobQueue, job: Job) -> None:
        while not self._stop.wait(queue.lease_seconds / 3):
            try:
                queue.renew(job)
            except LeaseLost:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """One worker: one predictor (the bundle loaded once), any number of jobs."""

    def __init__(self, name: str, queue: JobQueue, predictor: Predictor, model: Model, rules: list[Rule],
                 sources: dict[str, SeriesSource], destination: Destination, log: EventLog):
        self.name, self.queue, self.predictor, self.model = name, queue, predictor, model
        self.rules, self.sources, self.destination, self.log = rules, sources, destination, log

    def run(self, stop: threading.Event, idle_seconds: float = 0.5) -> None:
        """Take and process jobs until ``stop`` is set."""
        while not stop.is_set():
            job = self.queue.claim(self.name)
            if job is None:
                stop.wait(idle_seconds)
                continue
            self.process(job)

    def process(self, job: Job) -> None:
        """One job to its end state (or back to the queue on a transient error)."""
        started = time.monotonic()
        self.log("job_started", job=job.id, series_uid=job.series_uid, attempt=job.attempts, worker=self.name)
        heartbeat = _Heartbeat(self.queue, job)
        try:
            outcome = self._segment_and_store(job)
        except LeaseLost:
            outcome = ("lease_lost", "another worker holds the job now")
        except Exception as err:
            outcome = ("retry" if _transient(err) else "failed", _one_line(err))
        finally:
            heartbeat.stop()
        self._record(job, *outcome, seconds=round(time.monotonic() - started, 3))

    def _record(self, job: Job, outcome: str, detail: str, seconds: float) -> None:
        fields = {"job": job.id, "series_uid": job.series_uid, "worker": self.name, "seconds": seconds}
        try:
            if outcome == "done":
                self.log("job_done", seg_uid=detail, **fields)
            elif outcome == "skipped":
                self.queue.skip(job, detail)
                self.log("job_skipped", reason=detail, **fields)
            elif outcome == "failed":
                self.queue.fail(job, detail)
                self.log("job_failed", level="error", reason=detail, **fields)
            elif outcome == "retry":
                delay = self.queue.retry(job, detail)
                self.log("job_retry", level="warning", reason=detail, retry_in=delay, **fields)
            else:
                self.log("job_lost", level="warning", reason=detail, **fields)
        except LeaseLost:
            self.log("job_lost", level="warning", reason="the lease expired before the outcome was recorded", **fields)
            return
        if outcome in ("done", "skipped", "failed"):
            self.sources[job.source].release(job.source_ref)

    def _segment_and_store(self, job: Job) -> tuple[str, str]:
        with tempfile.TemporaryDirectory(prefix="edge-medsam-serve-") as scratch:
            tags, folder = self.sources[job.source].open(job.source_ref, Path(scratch))
            rule = select_rule(self.rules, tags)
            if rule is None:
                return "skipped", f"no rule selects Modality {tags.modality or '(none)'}"
            if rule.prompt == "skip":
                return "skipped", "a skip rule selects it"
            volume = read_volume(folder)
            labels = VolumeSegmenter(self.predictor, volume).segment().labels
            series_uid, instance_uid = self.model.seg_uids(job.series_uid)
            seg = write_dicom_seg(Path(scratch) / "seg.dcm", labels, volume, {1: rule.segment_label},
                                  algorithm=self.model.algorithm(), uids=(series_uid, instance_uid))
            self.queue.storing(job)
            self.destination.store(seg)
            self.queue.done(job, instance_uid, int(volume.shape[2]))
            return "done", instance_uid
