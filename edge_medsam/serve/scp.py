"""The DICOM C-STORE receiver (pynetdicom): instances from allowed AE titles are written under
``storage/<SeriesInstanceUID>/`` and their series recorded as received; a series is queued once no instance
came for ``stable_seconds`` (the sweeper in the node does that)."""

from __future__ import annotations

import re
from pathlib import Path

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from edge_medsam.io.files import atomic_write
from edge_medsam.serve.config import ScpSettings
from edge_medsam.serve.jobs import JobQueue
from edge_medsam.serve.logs import EventLog

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SUCCESS, _CANNOT_UNDERSTAND, _OUT_OF_RESOURCES = 0x0000, 0xC000, 0xA700


class StoreReceiver:
    """A running C-STORE SCP; ``stop()`` shuts it down."""

    def __init__(self, settings: ScpSettings, storage: Path, queue: JobQueue, bundle_sha256: str, log: EventLog):
        self.storage, self.queue, self.bundle_sha256, self.log = storage, queue, bundle_sha256, log
        ae = AE(ae_title=settings.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.require_calling_aet = list(settings.allowed_ae_titles)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected)]
        self._server = ae.start_server((settings.host, settings.port), block=False, evt_handlers=handlers)
        self.address = self._server.server_address
        log("scp_listening", host=self.address[0], port=self.address[1], ae_title=settings.ae_title)

    def _on_rejected(self, event: evt.Event) -> None:
        self.log("association_rejected", level="warning", calling_ae=event.assoc.requestor.ae_title,
                 address=event.assoc.requestor.address)

    def _on_store(self, event: evt.Event) -> int:
        dataset = event.dataset
        series_uid, instance_uid = str(dataset.get("SeriesInstanceUID", "")), str(dataset.get("SOPInstanceUID", ""))
        if not (_UID.match(series_uid) and _UID.match(instance_uid)):
            self.log("instance_refused", level="warning", reason="no valid SeriesInstanceUID / SOPInstanceUID")
            return _CANNOT_UNDERSTAND
        if not self.queue.receiving(series_uid, self.bundle_sha256):
            self.log("instance_ignored", series_uid=series_uid, sop_uid=instance_uid, reason="series already queued")
            return _SUCCESS
        folder = self.storage / series_uid
        data = event.encoded_dataset()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / f"{instance_uid}.dcm", lambda tmp: tmp.write_bytes(data))
        except OSError as err:
            self.log("instance_not_written", level="error", series_uid=series_uid, reason=str(err))
            return _OUT_OF_RESOURCES
        if not self.queue.add(series_uid, self.bundle_sha256, "scp", str(folder), state="received"):
            self.queue.touch(series_uid, self.bundle_sha256)
        return _SUCCESS

    def stop(self) -> None:
        self._server.shutdown()
