"""The ledger's SQLite recorder (the port is `infrastructure/eventstore.py`)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, cast

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from infrastructure.eventstore import translated

_CHUNK = 500  # parameters a statement, well under SQLite's limit


class OneWriterSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite application recorder, inserting through one connection of its
    own on a database file.

    SQLite lets one writer in at a time anyway; going through the library's pool, its
    reader-writer interlock and its transaction wrappers cost about 50 us an insert more
    than `BEGIN IMMEDIATE`, the inserts and `COMMIT` on a plain connection (a single event
    is one statement, its own transaction). Threads take
    turns (a lock); other processes wait for SQLite's write lock up to the datastore's lock
    timeout, as the library's connections do. An in-memory database keeps the library's path
    (its pool is what shares the one database between connections).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writing = threading.Lock()
        self._writer: sqlite3.Connection | None = None

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        pool = self.datastore.pool
        if pool.is_sqlite_memory_mode:
            return super().insert_events(stored_events, **kwargs)
        events = stored_events
        statement = self.insert_events_statement
        with self._writing:
            if self._writer is None:
                self._writer = sqlite3.connect(
                    pool.db_name,
                    uri=True,
                    check_same_thread=False,
                    isolation_level=None,
                    timeout=pool.lock_timeout or 5.0,
                )
            writer = self._writer
            execute = writer.execute
            try:
                if len(events) == 1:  # one statement is a transaction of its own
                    (e,) = events
                    row = (e.originator_id, e.originator_version, e.topic, e.state)
                    return [cast(int, execute(statement, row).lastrowid)]
                execute("BEGIN IMMEDIATE")
                try:
                    ids = []
                    for e in events:
                        row = (e.originator_id, e.originator_version, e.topic, e.state)
                        ids.append(cast(int, execute(statement, row).lastrowid))
                    execute("COMMIT")
                except BaseException:
                    if writer.in_transaction:
                        writer.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise translated(error, sqlite3) from error
            return ids

    def select_runs(self, run_ids: list[str]) -> list[StoredEvent]:
        """The stored events of the runs, ordered by run and version."""
        rows: list[StoredEvent] = []
        with self.datastore.transaction(commit=False) as cursor:
            for start in range(0, len(run_ids), _CHUNK):
                chunk = run_ids[start : start + _CHUNK]
                cursor.execute(
                    f"SELECT originator_id, originator_version, topic, state "
                    f"FROM {self.events_table_name} WHERE originator_id IN "
                    f"({', '.join('?' * len(chunk))}) ORDER BY originator_id, originator_version",
                    chunk,
                )
                rows += [StoredEvent(r[0], r[1], r[2], r[3]) for r in cursor.fetchall()]
        return rows

    def release(self) -> None:
        """Closes the writer connection."""
        with self._writing:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
