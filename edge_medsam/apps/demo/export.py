"""Write a session's masks for download: PNG (the shown view), NIfTI (the volume's grid) or DICOM-SEG."""

from __future__ import annotations

from pathlib import Path

from edge_medsam.apps.demo.document import DICOM_SEG, NIFTI, PNG
from edge_medsam.apps.demo.session import DemoSession, Step
from edge_medsam.errors import InputError
from edge_medsam.io import write_dicom_seg, write_mask_png, write_nifti_labels
from edge_medsam.runtime.predictor import timed

# Fixed names: nothing the user typed or uploaded becomes part of a path.
FILE_NAMES = {PNG: "edge-medsam-mask.png", NIFTI: "edge-medsam-mask.nii.gz", DICOM_SEG: "edge-medsam-mask-seg.dcm"}


def export_mask(session: DemoSession, fmt: str, folder: Path, propagate: bool = False) -> Path:
    """Write the masks in ``fmt`` into ``folder`` and return the file; the session's last step records the time
    (hold the engine's lock: ``propagate`` runs the model)."""
    allowed = session.document.formats()
    if fmt not in allowed:
        raise InputError(f"this upload cannot be downloaded as {fmt}", fix=f"choose {' or '.join(allowed)}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILE_NAMES[fmt]
    stages: dict[str, float] = {}
    with timed(stages, "total"):
        if fmt == PNG:
            labels = session.labels()
            with timed(stages, "write"):
                written = write_mask_png(target, labels)
        else:
            volume = session.document.volume
            assert volume is not None  # formats() offers NIfTI and DICOM-SEG for volumes only
            labels = session.label_volume(propagate, stages)
            with timed(stages, "write"):
                written = (write_nifti_labels(target, labels, volume) if fmt == NIFTI
                           else write_dicom_seg(target, labels, volume, session.object_names()))
    session.last_step = Step(f"download {fmt}", stages)
    return written
