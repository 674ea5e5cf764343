"""What the node is doing: queue counts, failures with their reasons, throughput; served as JSON on localhost
(``/health``, ``/status``) by the stdlib HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_medsam.serve.jobs import STATES, JobQueue

THROUGHPUT_WINDOW_SECONDS = 3600.0


def queue_status(queue: JobQueue, now: float | None = None) -> dict[str, Any]:
    """Counts per state, the failed and retrying jobs' reasons, and over the last hour series per minute and the
    median time from received (the first C-STORE instance, or Orthanc's stable-series change) to stored."""
    now = time.time() if now is None else now
    rows = queue.rows()
    counts = {state: 0 for state in STATES}
    for row in rows:
        counts[row["state"]] += 1
    recent = [r for r in rows if r["state"] == "done" and r["finished_at"] >= now - THROUGHPUT_WINDOW_SECONDS]
    latencies = sorted(r["finished_at"] - r["received_at"] for r in recent)
    span = (max(r["finished_at"] for r in recent) - min(r["received_at"] for r in recent)) if recent else 0.0
    return {
        "counts": counts,
        "failures": [{"series_uid": r["series_uid"], "reason": r["reason"], "attempts": r["attempts"]}
                     for r in rows if r["state"] == "failed"],
        "retrying": [{"series_uid": r["series_uid"], "reason": r["reason"], "attempts": r["attempts"]}
                     for r in rows if r["state"] == "queued" and r["reason"]],
        "throughput": {
            "done_last_hour": len(recent),
            "series_per_minute": round(60.0 * len(recent) / span, 2) if span > 0 else None,
            "median_seconds_received_to_stored": round(latencies[len(latencies) // 2], 2) if latencies else None,
            "slices_last_hour": sum(r["slices"] or 0 for r in recent),
        },
    }


class HealthServer:
    """``GET /health`` ({"status": "ok", ...} while the node's ``alive()`` says so, else 503) and ``/status``."""

    def __init__(self, host: str, port: int, queue: JobQueue, alive: Callable[[], dict[str, Any]]):
        def answer(handler: BaseHTTPRequestHandler) -> None:
            if handler.path == "/health":
                body = alive()
                code = 200 if body.get("status") == "ok" else 503
            elif handler.path == "/status":
                body, code = queue_status(queue), 200
            else:
                body, code = {"error": "not found", "paths": ["/health", "/status"]}, 404
            data = json.dumps(body).encode()
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer(self)

            def log_message(self, format: str, *args: Any) -> None:  # the node logs JSON lines, not these
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.address = self._server.server_address
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
