"""The event store's port: what the ledger asks of its recorder beyond the library's (the
events of many runs at once, one writer connection kept and given back), the latest version
of a run, the library's errors for a driver's, and the mapper that writes a run's events.

The recorders, one module a backend: `eventstore_sqlite.py` and `eventstore_postgres.py`.
Each is named by its topic in the settings (`infrastructure/settings.py`) and loaded by the
library, so a process on SQLite never imports the PostgreSQL driver (about 65 ms of a
command's start)."""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from json.encoder import encode_basestring
from types import ModuleType
from typing import Any, Protocol, cast, runtime_checkable

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    Mapper,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.utils import get_topic

from domain.events import RunEvent


@runtime_checkable
class Writer(Protocol):
    """A recorder of the ledger's: it inserts through one connection it keeps, and reads
    many runs' events in one query."""

    def select_runs(self, run_ids: list[str]) -> list[StoredEvent]:
        """The stored events of the runs, ordered by run and version."""
        ...

    def release(self) -> None:
        """Gives the writer connection back (before the datastore closes)."""
        ...


def histories(
    recorder: ApplicationRecorder, run_ids: Collection[str]
) -> dict[str, list[StoredEvent]]:
    """The stored events of each run, in version order (runs without events are absent).
    `recorder` is a `Writer` (the ledger checks it once, when it opens)."""
    if len(run_ids) == 1:
        (run_id,) = run_ids
        events = list(recorder.select_events(run_id))
        return {run_id: events} if events else {}
    found: defaultdict[str, list[StoredEvent]] = defaultdict(list)
    for row in cast(Writer, recorder).select_runs(list(run_ids)):
        found[row.originator_id].append(row)  # type: ignore[index]
    return dict(found)


class VersionProbe:
    """The latest version of a run, asked as cheaply as the backend allows: on a SQLite file,
    one plain read connection a thread (WAL readers see every committed write); elsewhere
    through the recorder."""

    def __init__(self, recorder: ApplicationRecorder, sqlite_path: str | None) -> None:
        self._recorder = recorder
        self._path = sqlite_path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        table = getattr(recorder, "events_table_name", "")
        self._statement = f"SELECT max(originator_version) FROM {table} WHERE originator_id = ?"

    def latest(self, run_id: str) -> int | None:
        if self._path is None:
            events = self._recorder.select_events(run_id, desc=True, limit=1)
            return events[0].originator_version if events else None
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        row = connection.execute(self._statement, (run_id,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


_DB_API_ERRORS = (
    InterfaceError,
    OperationalError,
    DataError,
    IntegrityError,
    InternalError,
    ProgrammingError,
    NotSupportedError,
    DatabaseError,
)
"""The library's errors, each named as the DB-API error of the driver it translates (as the
library's datastores translate them); the more specific first."""


def translated(error: Exception, driver: ModuleType) -> PersistenceError:
    """A driver's (psycopg's, sqlite3's) error as the library's."""
    kind = next(
        (ours for ours in _DB_API_ERRORS if isinstance(error, getattr(driver, ours.__name__))),
        PersistenceError,
    )
    return kind(str(error))


class RunMapper(Mapper[str]):
    """The library's mapper, writing a run event's state out directly: the very bytes its
    JSON transcoder writes (the same keys in the same order, datetimes as its
    `datetime_iso` objects; tests/unit/test_mapper.py checks), in about half the time.
    Anything else, or a value of another type, or a mapper that compresses or encrypts,
    goes the library's way. Reading is the library's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_moment: tuple[datetime | None, str] = (None, "")

    def to_stored_event(self, domain_event: DomainEventProtocol[str]) -> StoredEvent:
        if self.compressor or self.cipher or not isinstance(domain_event, RunEvent):
            return super().to_stored_event(domain_event)
        parts = []
        for name, value in vars(domain_event).items():
            if name in _IDENTITY:
                continue
            kind = type(value)
            if kind is str:
                text = encode_basestring(value)
            elif value is None:
                text = "null"
            elif kind is datetime:
                text = self._moment(value)
            elif kind is int:
                text = str(value)
            else:
                return super().to_stored_event(domain_event)
            parts.append(f'"{name}":{text}')
        cls = type(domain_event)
        if cls.class_version > 1:
            parts.append(f'"class_version":{cls.class_version}')
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(cls),
            state=("{" + ",".join(parts) + "}").encode(),
        )

    def _moment(self, value: datetime) -> str:
        """A datetime as the library's transcoding writes it. A group's events share one
        reading of the clock (their `timestamp`, and their `at` unless given), so the last
        one written is kept with its text."""
        moment, text = self._last_moment
        if moment is not value:
            text = f'{{"_type_":"datetime_iso","_data_":"{value.isoformat()}"}}'
            self._last_moment = (value, text)
        return text


_IDENTITY = frozenset({"originator_id", "originator_version"})
"""Stored in columns of their own, not in the state."""
