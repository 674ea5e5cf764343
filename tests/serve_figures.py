"""The README's PACS-node figures: series per minute and arrival-to-archive time for 100-slice CT series with the
shipped bundle, against a real Orthanc on this machine. Run: .venv/bin/python tests/serve_figures.py [SERIES]

Arrival = the last instance of a series accepted by Orthanc; stored = the node recorded its SEG as accepted by
Orthanc (the job's finished_at). Orthanc's StableAge is 1 s here (60 s by default: add it in production).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from serve_harness import Orthanc, ct_series, queue_of, running_node, series_uid, wait_for, write_config


def measure(count: int, workers: int, threads: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="serve-figures-"))
    orthanc = Orthanc(root / "orthanc")
    orthanc.start()
    try:
        series = [ct_series(root / f"ct{i}", slices=100, size=256, seed=100 + i) for i in range(count)]
        config = write_config(root / "node", orthanc, workers=workers, threads=threads, lease_seconds=60)
        arrived: dict[str, float] = {}
        with running_node(config):
            queue = queue_of(config)
            for paths in series:
                orthanc.upload(paths)
                arrived[series_uid(paths)] = time.time()
            wait_for(lambda: all(r["state"] == "done" for r in queue.rows()) and len(queue.rows()) == count,
                     60 * count, "every SEG")
            rows = queue.rows()
        assert len(orthanc.segs()) == count
        finished = {r["series_uid"]: r["finished_at"] for r in rows}
        latencies = sorted(finished[uid] - t for uid, t in arrived.items())
        span = max(finished.values()) - min(arrived.values())
        first = pydicom.dcmread(series[0][0], stop_before_pixels=True)
        return {"series": count, "slices": 100, "size": [int(first.Rows), int(first.Columns)], "workers": workers,
                "threads_per_worker": threads, "series_per_minute": round(60 * count / span, 2),
                "arrival_to_stored_s": {"first": round(latencies[0], 1), "median": round(latencies[len(latencies) // 2], 1),
                                        "max": round(latencies[-1], 1)},
                "load_average_1min_after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    finally:
        orthanc.stop(kill=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    for count, workers, threads in ((1, 1, 2), (n, 1, 2), (n, 2, 1)):
        print(json.dumps(measure(count, workers, threads)), flush=True)
