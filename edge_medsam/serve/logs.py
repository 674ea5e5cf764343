"""Structured logs: one JSON object per line. Callers pass UIDs, states and reasons only, never patient data."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO


class EventLog:
    """Append JSON-line events to a file (or stderr)."""

    def __init__(self, path: Path | None = None):
        self._lock = threading.Lock()
        self._stream: TextIO = sys.stderr
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8")

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        record = {"time": round(time.time(), 3), "level": level, "event": event, **fields}
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._stream is not sys.stderr:
            self._stream.close()
