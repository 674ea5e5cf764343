"""The durable job queue: one SQLite file that several workers (threads or processes) share.

A job is one series for one bundle (unique by SeriesInstanceUID + bundle sha256, so a series is never segmented
twice by the same model). States: received (C-STORE instances still arriving) → queued → segmenting → storing →
done, or skipped (no rule selects it) or failed (with its one-line reason). A worker holds a job under a lease
that it renews while it works; a job whose lease expired (its worker was killed) is taken again by the next
worker. Transient errors put the job back in the queue with an exponential back-off, up to ``max_attempts``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATES = ("received", "queued", "segmenting", "storing", "done", "skipped", "failed")
WORKING = ("segmenting", "storing")
MAX_BACKOFF_SECONDS = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    series_uid TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    source_ref TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until REAL,
    not_before REAL NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    slices INTEGER,
    seg_uid TEXT,
    UNIQUE (series_uid, bundle_sha256)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Job:
    """A claimed job: what to fetch and who holds it."""

    id: int
    series_uid: str
    bundle_sha256: str
    source: str
    source_ref: str
    attempts: int
    owner: str


class LeaseLost(RuntimeError):
    """The job's lease expired and another worker holds it now."""


class JobQueue:
    """The queue in ``path`` (created on first use); one connection per thread."""

    def __init__(self, path: str | Path, *, lease_seconds: float = 120.0, max_attempts: int = 5,
                 retry_seconds: float = 2.0):
        self.path = Path(path)
        self.lease_seconds = float(lease_seconds)
        self.max_attempts = int(max_attempts)
        self.retry_seconds = float(retry_seconds)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db().executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # Arrivals
    def add(self, series_uid: str, bundle_sha256: str, source: str, source_ref: str, *, state: str = "queued"
            ) -> bool:
        """Record a series (``queued``, or ``received`` while its instances arrive); False if it is known."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (series_uid, bundle_sha256, source, source_ref, state, received_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", (series_uid, bundle_sha256, source, source_ref, state, now, now))
            return cursor.rowcount == 1

    def receiving(self, series_uid: str, bundle_sha256: str) -> bool:
        """True when instances of this series are still wanted (unknown, or still arriving)."""
        row = self._db().execute("SELECT state FROM jobs WHERE series_uid=? AND bundle_sha256=?",
                                 (series_uid, bundle_sha256)).fetchone()
        return row is None or row["state"] == "received"

    def touch(self, series_uid: str, bundle_sha256: str) -> None:
        """Another instance of a received series arrived: its stability clock starts again."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET updated_at=? WHERE series_uid=? AND bundle_sha256=? AND state='received'",
                       (time.time(), series_uid, bundle_sha256))

    def promote_stable(self, stable_seconds: float) -> list[str]:
        """Queue the received series that got no instance for ``stable_seconds``; their UIDs."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute("SELECT id, series_uid FROM jobs WHERE state='received' AND updated_at<=?",
                              (now - stable_seconds,)).fetchall()
            db.executemany("UPDATE jobs SET state='queued', updated_at=? WHERE id=?", [(now, r["id"]) for r in rows])
        return [r["series_uid"] for r in rows]

    # Work
    def claim(self, owner: str) -> Job | None:
        """Take the oldest runnable job (queued and due, or working with an expired lease) under a new lease."""
        now = time.time()
        with self._transaction() as db:
            while True:
                row = db.execute(
                    "SELECT * FROM jobs WHERE (state='queued' AND not_before<=?) OR "
                    "(state IN ('segmenting', 'storing') AND lease_until<?) ORDER BY not_before, id LIMIT 1",
                    (now, now)).fetchone()
                if row is None:
                    return None
                if row["attempts"] >= self.max_attempts:
                    last = row["reason"] or "its worker stopped without a word (killed?)"
                    db.execute("UPDATE jobs SET state='failed', reason=?, owner=NULL, finished_at=?, updated_at=? "
                               "WHERE id=?", (f"gave up after {row['attempts']} attempts: {last}", now, now, row["id"]))
                    continue
                db.execute("UPDATE jobs SET state='segmenting', owner=?, lease_until=?, attempts=attempts+1, "
                           "updated_at=? WHERE id=?", (owner, now + self.lease_seconds, now, row["id"]))
                return Job(row["id"], row["series_uid"], row["bundle_sha256"], row["source"], row["source_ref"],
                           row["attempts"] + 1, owner)

    def _update(self, job: Job, sets: str, values: tuple) -> None:
        with self._transaction() as db:
            cursor = db.execute(f"UPDATE jobs SET {sets}, updated_at=? WHERE id=? AND owner=? AND state IN "
                                "('segmenting', 'storing')", (*values, time.time(), job.id, job.owner))
            if cursor.rowcount != 1:
                raise LeaseLost(f"job {job.id} is no longer held by {job.owner}")

    def renew(self, job: Job) -> None:
        """Extend the lease (workers call it while they work)."""
        self._update(job, "lease_until=?", (time.time() + self.lease_seconds,))

    def storing(self, job: Job) -> None:
        """The SEG is written; storing it starts."""
        self._update(job, "state='storing', lease_until=?", (time.time() + self.lease_seconds,))

    def done(self, job: Job, seg_uid: str, slices: int) -> None:
        """The SEG is in the archive."""
        self._update(job, "state='done', reason=NULL, owner=NULL, seg_uid=?, slices=?, finished_at=?",
                     (seg_uid, slices, time.time()))

    def skip(self, job: Job, reason: str) -> None:
        """No rule segments this series."""
        self._update(job, "state='skipped', reason=?, owner=NULL, finished_at=?", (reason, time.time()))

    def fail(self, job: Job, reason: str) -> None:
        """The series cannot be segmented: the one-line reason stays in the record."""
        self._update(job, "state='failed', reason=?, owner=NULL, finished_at=?", (reason, time.time()))

    def retry(self, job: Job, reason: str) -> float:
        """A transient error: back in the queue after an exponential back-off (or failed after the last attempt);
        returns the delay."""
        if job.attempts >= self.max_attempts:
            self.fail(job, f"gave up after {job.attempts} attempts: {reason}")
            return 0.0
        delay = min(self.retry_seconds * 2 ** (job.attempts - 1), MAX_BACKOFF_SECONDS)
        self._update(job, "state='queued', reason=?, owner=NULL, lease_until=NULL, not_before=?",
                     (reason, time.time() + delay))
        return delay

    # Change-feed positions
    def cursor(self, name: str) -> int:
        row = self._db().execute("SELECT value FROM cursors WHERE name=?", (name,)).fetchone()
        return int(row["value"]) if row else 0

    def set_cursor(self, name: str, value: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=?",
                       (name, value, value))

    # Reading
    def rows(self, state: str | None = None) -> list[sqlite3.Row]:
        """Every job (or those in ``state``), oldest first."""
        if state is None:
            return self._db().execute("SELECT * FROM jobs ORDER BY id").fetchall()
        return self._db().execute("SELECT * FROM jobs WHERE state=? ORDER BY id", (state,)).fetchall()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
