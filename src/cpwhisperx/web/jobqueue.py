"""The server's job queue, in SQLite beside the jobs (``<out>/serve.sqlite``): it outlives the
server, so a restart loses no job and the one that was running is queued again (its stages
resume from the job's manifest)."""

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    error TEXT
)"""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    workflow: str
    state: str
    created: float
    started: float | None
    ended: float | None
    error: str | None


class Queue:
    """Jobs in the order they came; ``take`` waits for the next one and marks it running."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._changed = threading.Condition()
        with self._db() as db:
            db.execute(_SCHEMA)
            # A job running when the server stopped: queued again, first in line as before.
            db.execute("UPDATE jobs SET state = 'queued' WHERE state = 'running'")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection per use: the server's threads share nothing but the file."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, job_id: str, workflow: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, workflow, state, created) VALUES (?, ?, 'queued', ?)",
                       (job_id, workflow, time.time()))
        self._notify()

    def requeue(self, job_id: str) -> bool:
        """A finished job runs again (its unchanged stages are reused); False if it is queued
        or running already."""
        with self._db() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'queued', error = NULL, ended = NULL, created = ? "
                "WHERE id = ? AND state IN ('done', 'failed', 'cancelled')",
                (time.time(), job_id)).rowcount
        self._notify()
        return bool(changed)

    def take(self, timeout: float) -> Entry | None:
        """The oldest queued job, now running; None if none came within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                with self._db() as db:
                    row = db.execute("SELECT id FROM jobs WHERE state = 'queued' "
                                     "ORDER BY created LIMIT 1").fetchone()
                    if row:
                        db.execute("UPDATE jobs SET state = 'running', started = ? WHERE id = ?",
                                   (time.time(), row[0]))
                if row:
                    return self.get(row[0])
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def finish(self, job_id: str, state: str, error: str | None = None) -> None:
        """A final state; a job cancelled meanwhile stays cancelled."""
        with self._db() as db:
            db.execute("UPDATE jobs SET state = ?, ended = ?, error = ? "
                       "WHERE id = ? AND state != 'cancelled'",
                       (state, time.time(), error, job_id))
        self._notify()

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued or running job; its state before (None: no such job)."""
        with self._db() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row and row[0] in ("queued", "running"):
                db.execute("UPDATE jobs SET state = 'cancelled', ended = ?, "
                           "error = 'cancelled' WHERE id = ?", (time.time(), job_id))
        self._notify()
        return row[0] if row else None

    def remove(self, job_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def get(self, job_id: str) -> Entry | None:
        with self._db() as db:
            row = db.execute("SELECT id, workflow, state, created, started, ended, error "
                             "FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Entry(*row) if row else None

    def all(self) -> list[Entry]:
        with self._db() as db:
            rows = db.execute("SELECT id, workflow, state, created, started, ended, error "
                              "FROM jobs ORDER BY created").fetchall()
        return [Entry(*row) for row in rows]

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
