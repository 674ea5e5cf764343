"""Library warnings and log records met while one input is processed: kept for the log, not printed on stderr.

pydicom, highdicom and the picture decoders warn about odd but readable files; printed as they come, their
lines (with source code) land between the one-line errors of a batch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _Held(logging.Handler):
    """Keeps the messages of WARNING and worse records."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def held_remarks() -> Iterator[list[str]]:
    """Collect the warnings and WARNING log records raised inside; the list holds them, unique, once it exits."""
    remarks: list[str] = []
    held = _Held(remarks)
    root = logging.getLogger()
    root.addHandler(held)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", ResourceWarning)  # a library's unclosed temporary folder, not a remark
            try:
                yield remarks
            finally:
                remarks.extend(str(w.message) for w in caught)
    finally:
        root.removeHandler(held)
        remarks[:] = dict.fromkeys(" ".join(r.split()) for r in remarks)  # pydicom both logs and warns each one


@contextmanager
def log_file(path: Path, name: str) -> Iterator[logging.Logger]:
    """The logger ``name`` writing to ``path`` (only there) for the duration."""
    logger = logging.getLogger(name)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    propagate, level = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = propagate
        logger.setLevel(level)
