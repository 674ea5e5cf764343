"""The node: the Orthanc change-feed follower, the DICOMweb poller, the C-STORE receiver and its stability sweeper,
the workers and the health endpoint, started together and stopped together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edge_medsam.runtime.bundle import DEMO_BUNDLE, open_bundle
from edge_medsam.runtime.manifest import MANIFEST, sha256_file
from edge_medsam.runtime.predictor import Predictor
from edge_medsam.serve.config import NodeSettings
from edge_medsam.serve.dicomweb import DicomwebArchive
from edge_medsam.serve.jobs import JobQueue
from edge_medsam.serve.logs import EventLog
from edge_medsam.serve.orthanc import TRANSIENT, OrthancClient
from edge_medsam.serve.rules import NOT_IMAGES
from edge_medsam.serve.scp import StoreReceiver
from edge_medsam.serve.sources import DicomwebSource, OrthancSource, ReceivedSource, SeriesSource
from edge_medsam.serve.status import HealthServer
from edge_medsam.serve.store import DicomDestination, DicomwebDestination, OrthancDestination
from edge_medsam.serve.worker import Model, Worker

MAX_FEED_BACKOFF_SECONDS = 30.0
SWEEP_SECONDS = 0.5


def open_queue(settings: NodeSettings) -> JobQueue:
    return JobQueue(settings.queue, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                    retry_seconds=settings.retry_seconds)


def load_model(settings: NodeSettings) -> Model:
    """The configured bundle (default: the shipped demo bundle) and its sha256 (of its manifest, which holds
    the sha256 of every graph file)."""
    bundle = open_bundle(settings.bundle or DEMO_BUNDLE, settings.storage / "bundles")
    return Model(bundle, sha256_file(bundle.root / MANIFEST))


def follow_orthanc(client: OrthancClient, queue: JobQueue, model: Model, settings: NodeSettings,
                   stop: threading.Event, log: EventLog) -> None:
    """Queue every series Orthanc declares stable; the feed position is kept in the queue, so a restarted node
    goes on where it stopped. While Orthanc is down, polls back off up to 30 s."""
    name = f"orthanc:{client.url}"
    poll = settings.orthanc.poll_seconds
    wait = poll
    while not stop.is_set():
        try:
            changes, last, done = client.changes(queue.cursor(name))
            for change in changes:
                try:
                    series_uid, tags, _ = client.series(change.orthanc_id)
                except httpx.HTTPStatusError as err:
                    if err.response.status_code != 404:
                        raise
                    log("series_gone", level="warning", orthanc_id=change.orthanc_id)  # deleted since
                    continue
                if tags.modality.upper() in NOT_IMAGES:
                    continue  # the node's own SEGs among them
                if queue.add(series_uid, model.sha256, "orthanc", change.orthanc_id):
                    log("series_queued", series_uid=series_uid, source="orthanc", modality=tags.modality)
            queue.set_cursor(name, last)
            wait = poll
        except TRANSIENT as err:
            log("orthanc_unreachable", level="warning", reason=" ".join(str(err).split()), retry_in=wait)
            done, wait = True, min(wait * 2, MAX_FEED_BACKOFF_SECONDS)
        if done:
            stop.wait(wait)


def follow_dicomweb(archive: DicomwebArchive, queue: JobQueue, model: Model, settings: NodeSettings,
                    stop: threading.Event, log: EventLog) -> None:
    """Queue every image series whose instance count stayed the same for ``stable_seconds`` between QIDO-RS polls.
    While the archive is down, polls back off up to 30 s."""
    poll, stable = settings.dicomweb.poll_seconds, settings.dicomweb.stable_seconds
    seen: dict[str, tuple[int, float]] = {}  # series UID -> (instances, since when)
    queued: set[str] = set()
    wait = poll
    while not stop.is_set():
        try:
            now = time.monotonic()
            for entry in archive.series():
                if entry.series_uid in queued or entry.tags.modality.upper() in NOT_IMAGES:
                    continue
                count, since = seen.get(entry.series_uid, (-1, now))
                if count != entry.instances:
                    seen[entry.series_uid] = (entry.instances, now)
                elif now - since >= stable:
                    queued.add(entry.series_uid)
                    if queue.add(entry.series_uid, model.sha256, "dicomweb", entry.ref):
                        log("series_queued", series_uid=entry.series_uid, source="dicomweb",
                            modality=entry.tags.modality)
            wait = poll
        except ConnectionError as err:
            log("dicomweb_unreachable", level="warning", reason=str(err), retry_in=wait)
            wait = min(wait * 2, MAX_FEED_BACKOFF_SECONDS)
        stop.wait(wait)


def sweep_received(queue: JobQueue, stable_seconds: float, stop: threading.Event, log: EventLog) -> None:
    """Queue C-STORE series once they are stable."""
    while not stop.wait(SWEEP_SECONDS):
        for series_uid in queue.promote_stable(stable_seconds):
            log("series_queued", series_uid=series_uid, source="scp")


def run_node(settings: NodeSettings, stop: threading.Event, *, feeders: bool = True,
             ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run until ``stop`` is set. ``feeders=False`` runs workers only (more workers on a shared queue).
    ``ready`` gets the bound addresses once everything listens."""
    log = EventLog(settings.log)
    queue = open_queue(settings)
    model = load_model(settings)
    client = OrthancClient(settings.orthanc) if settings.orthanc else None
    archive = DicomwebArchive(settings.dicomweb) if settings.dicomweb else None
    sources: dict[str, SeriesSource] = {"scp": ReceivedSource()}
    if client is not None:
        sources["orthanc"] = OrthancSource(client)
    if archive is not None:
        sources["dicomweb"] = DicomwebSource(archive)
    scp_title = settings.scp.ae_title if settings.scp else "EDGEMEDSAM"
    destination = {"orthanc": lambda: OrthancDestination(client), "dicomweb": lambda: DicomwebDestination(archive),
                   "dicom": lambda: DicomDestination(settings.destination, scp_title)}[settings.destination.kind]()
    threads: list[threading.Thread] = []
    for i in range(settings.workers):
        predictor = Predictor.from_bundle(model.bundle, backend=settings.backend, threads=settings.threads)
        worker = Worker(f"{threading.get_native_id()}-{i}", queue, predictor, model, settings.rules, sources,
                        destination, log)
        threads.append(threading.Thread(target=worker.run, args=(stop,), name=f"worker-{i}", daemon=True))
    receiver = None
    if feeders and client is not None:
        threads.append(threading.Thread(target=follow_orthanc, args=(client, queue, model, settings, stop, log),
                                        name="orthanc-feed", daemon=True))
    if feeders and archive is not None:
        threads.append(threading.Thread(target=follow_dicomweb, args=(archive, queue, model, settings, stop, log),
                                        name="dicomweb-feed", daemon=True))
    if feeders and settings.scp is not None:
        receiver = StoreReceiver(settings.scp, settings.storage / "received", queue, model.sha256, log)
        threads.append(threading.Thread(target=sweep_received, args=(queue, settings.scp.stable_seconds, stop, log),
                                        name="scp-sweeper", daemon=True))
    for thread in threads:
        thread.start()

    def alive() -> dict[str, Any]:
        dead = [t.name for t in threads if not t.is_alive()]
        return {"status": "ok" if not dead else "degraded", "threads": len(threads), "stopped": dead,
                "bundle": model.bundle.name, "bundle_sha256": model.sha256}

    serve_health = feeders and settings.health_port
    health = HealthServer(settings.health_host, settings.health_port, queue, alive) if serve_health else None
    addresses = {"health": health.address if health else None, "scp": receiver.address if receiver else None}
    log("node_started", workers=settings.workers, feeders=feeders, bundle=model.bundle.name,
        bundle_sha256=model.sha256, queue=str(Path(settings.queue)), **addresses)
    if ready is not None:
        ready(addresses)
    try:
        stop.wait()
    finally:
        if receiver is not None:
            receiver.stop()
        if health is not None:
            health.stop()
        for thread in threads:
            thread.join()  # a worker finishes its current job first
        if client is not None:
            client.close()
        log("node_stopped")
        log.close()
