"""The event store's specifics: reading many runs' events at once (one query for a whole
group of commands), the latest version of a run, and inserts through one writer connection
that each recorder keeps (on PostgreSQL, in one round trip)."""

from __future__ import annotations

import sqlite3
import struct
import threading
from binascii import hexlify
from collections import defaultdict
from collections.abc import Collection, Sequence
from contextlib import suppress
from datetime import datetime
from json.encoder import encode_basestring
from types import ModuleType
from typing import Any, cast

import psycopg
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
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic, retry
from psycopg import generators, waiting
from psycopg.abc import PQGen
from psycopg.pq import Escaping, ExecStatus, PipelineStatus, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult
from psycopg.sql import SQL, Identifier

from domain.events import RunEvent

_SQLITE_CHUNK = 500  # parameters a statement, well under SQLite's limit


def histories(
    recorder: ApplicationRecorder, run_ids: Collection[str]
) -> dict[str, list[StoredEvent]]:
    """The stored events of each run, in version order (runs without events are absent)."""
    if len(run_ids) == 1:
        (run_id,) = run_ids
        events = list(recorder.select_events(run_id))
        return {run_id: events} if events else {}
    found: defaultdict[str, list[StoredEvent]] = defaultdict(list)
    for row in _select(recorder, list(run_ids)):
        found[row.originator_id].append(row)  # type: ignore[index]
    return dict(found)


def _select(recorder: ApplicationRecorder, ids: list[str]) -> list[StoredEvent]:
    if isinstance(recorder, PostgresApplicationRecorder):
        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as connection, connection.cursor() as cursor:
            cursor.execute(statement, (ids,))
            return [
                StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
                for r in cursor.fetchall()
            ]
    assert isinstance(recorder, SQLiteApplicationRecorder)
    rows: list[StoredEvent] = []
    with recorder.datastore.transaction(commit=False) as cursor:
        for start in range(0, len(ids), _SQLITE_CHUNK):
            chunk = ids[start : start + _SQLITE_CHUNK]
            cursor.execute(
                f"SELECT originator_id, originator_version, topic, state "
                f"FROM {recorder.events_table_name} WHERE originator_id IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY originator_id, originator_version",
                chunk,
            )
            rows += [StoredEvent(r[0], r[1], r[2], r[3]) for r in cursor.fetchall()]
    return rows


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


POLL_SECONDS = 0.002
"""How long a PostgreSQL insert of one event polls its socket for the answer before it
sleeps on it. A lone writer's insert is all latency, and waking a thread that slept on its
socket cost about 0.1 ms here. An insert of several events means callers sharing a commit,
and it sleeps at once: polling there helps only while nothing else in the process wants the
CPU, which the recorder cannot know. Measured with group inserts polling too: eight writers
and nothing else made 8,133-9,203 commands a second against 6,850-7,829, but sixteen
in-process clients of `scripts/bench_http.py` mixing reads with writes (80% writes) made
5,876-5,963 requests a second against 6,817-6,859."""

ARRAYS_FROM = 32
"""From how many events a PostgreSQL insert sends its values as binary arrays (`unnest`)
rather than written into the query. The server parses a query of literals at about 9 us a
row; arrays cost it about 4.6, but the extended protocol they need takes a pipeline of
statements where literals take one simple query. Measured here, one insert at a time: 0.30
against 0.32 ms for 8 events, even at 32 (0.43 ms), 0.55-0.63 against 0.67-0.69 at 64, and
2.3 against 4.1-4.2 ms at 500."""

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


def _translated(error: Exception, driver: ModuleType) -> PersistenceError:
    """A driver's (psycopg's, sqlite3's) error as the library's."""
    kind = next(
        (ours for ours in _DB_API_ERRORS if isinstance(error, getattr(driver, ours.__name__))),
        PersistenceError,
    )
    return kind(str(error))


class OneTripRecorder(PostgresApplicationRecorder):
    """eventsourcing's PostgreSQL application recorder, each insert sent in one round trip
    on a connection the recorder keeps.

    The library pipelines `BEGIN`, its table lock, `NOTIFY` and the insert, syncs, then
    commits: two round trips and psycopg's pipeline machinery, 0.86 ms an insert on this
    machine against 0.34 ms for one autocommitted insert. This sends the very same
    statements, the `LOCK TABLE ... IN EXCLUSIVE MODE` that makes commit order the order of
    the notification ids (so a reader tailing the log never misses an event) and the
    `NOTIFY` included, as one simple query. The database functions stay off.

    The values are written into the query here: text by libpq's `PQescapeLiteral`, the
    state as a hex `bytea` literal, the version as digits. psycopg's client-side binding
    (`ClientCursor`) parses the whole query for its placeholders on every call, which cost
    43 us a row in a 500-event insert against 18 us this way, and 91 against 78 in an
    8-event one.

    From `ARRAYS_FROM` events on, the values go as four binary arrays instead, bound to one
    `INSERT ... SELECT FROM unnest(...)`: the same statements in the same transaction, sent
    in one round trip as a libpq pipeline (the extended protocol binds values to one
    statement at a time), which halves the server's work on a large group.

    The table lock lets one insert in at a time anyway, so the recorder inserts through one
    connection, taken from the library's pool once and kept (a lock takes turns between
    threads): taking one from the pool for each insert cost about 50 us more. A connection
    that breaks goes back to the pool, which discards it, and the insert is retried on a new
    one; `release` gives it back for good.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: bytes | None = None  # the query up to its values
        self._pipeline: list[bytes] | None = None  # the statements around the arrays' insert
        self._writing = threading.Lock()
        self._writer: psycopg.Connection[Any] | None = None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        with self._writing:
            connection = self._connection()
            try:
                if len(stored_events) >= ARRAYS_FROM:
                    return self._insert_arrays(connection, stored_events)
                query = self._query(stored_events, connection)
                return self._exchange(connection, query, poll=len(stored_events) == 1)
            except psycopg.Error as error:
                self._recover(connection)
                raise _translated(error, psycopg) from error

    def release(self) -> None:
        """Gives the writer connection back to the pool (before the pool closes)."""
        with self._writing:
            if self._writer is not None:
                self.datastore.pool.putconn(self._writer)
                self._writer = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._writer is None:
            timeout = self.datastore.pool_open_timeout
            self.datastore.pool.open(wait=timeout is not None, timeout=timeout or 30.0)
            try:
                self._writer = self.datastore.pool.getconn()
            except psycopg.Error as error:
                raise _translated(error, psycopg) from error
        return self._writer

    def _recover(self, connection: psycopg.Connection[Any]) -> None:
        """After a failed insert: a connection whose transaction the server refused rolls it
        back and stays; any other (broken, or with the exchange cut off half way, which libpq
        may not have noticed yet) is closed and goes back to the pool, which discards it."""
        try:
            if connection.pgconn.pipeline_status != PipelineStatus.OFF:
                connection.pgconn.exit_pipeline_mode()
            if connection.info.transaction_status == TransactionStatus.INERROR:
                connection.execute("ROLLBACK")
            if connection.info.transaction_status == TransactionStatus.IDLE:
                return
        except psycopg.Error:
            pass
        self._writer = None
        connection.close()
        self.datastore.pool.putconn(connection)

    def _exchange(
        self, connection: psycopg.Connection[Any], query: bytes, *, poll: bool
    ) -> list[int]:
        """Sends the query and reads its answers through libpq (with `poll`, polling the
        socket for up to `POLL_SECONDS` before sleeping on it); the ids the insert returned."""
        pgconn = connection.pgconn
        pgconn.send_query(query)
        exchange = generators.execute(pgconn)
        results = None
        if poll:
            with suppress(psycopg.errors._WaitTimeout):  # psycopg's wait ran out of time
                results = waiting.wait(exchange, pgconn.socket, interval=0, timeout=POLL_SECONDS)
        if results is None:
            results = connection.wait(exchange)  # the exchange goes on where it was
        return _returned_ids(results, connection)

    def _insert_arrays(
        self, connection: psycopg.Connection[Any], events: Sequence[StoredEvent]
    ) -> list[int]:
        """Inserts the events with their values in binary arrays, the statements around
        them pipelined and synced once; the ids the insert returned."""
        if self._pipeline is None:
            self._pipeline = [
                b"BEGIN",
                *(SQL("").join([lock]).as_bytes(connection) for lock in self.lock_table_statements),
                SQL("NOTIFY {}").format(Identifier(self.channel_name)).as_bytes(connection),
                SQL(
                    "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
                    "SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::bytea[]) "
                    "RETURNING notification_id"
                )
                .format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
                .as_bytes(connection),
                b"COMMIT",
            ]
        *before, insert, commit = self._pipeline
        encoding = connection.info.encoding
        arrays = [
            _array(_TEXT, [str(event.originator_id).encode(encoding) for event in events]),
            _int8_array([event.originator_version for event in events]),
            _array(_TEXT, [event.topic.encode(encoding) for event in events]),
            _array(_BYTEA, [event.state for event in events]),
        ]
        pgconn = connection.pgconn
        pgconn.enter_pipeline_mode()
        for statement in before:
            pgconn.send_query_params(statement, None)
        pgconn.send_query_params(insert, arrays, param_types=_ARRAY_TYPES, param_formats=_BINARY)
        pgconn.send_query_params(commit, None)
        pgconn.pipeline_sync()
        results = connection.wait(_until_synced(pgconn))
        pgconn.exit_pipeline_mode()
        return _returned_ids(results, connection)

    def _query(self, events: Sequence[StoredEvent], connection: psycopg.Connection[Any]) -> bytes:
        """The one query that inserts the events, values written in as literals."""
        if self._head is None:
            self._head = (
                SQL(
                    "BEGIN; {}; NOTIFY {}; INSERT INTO {}.{} (originator_id, originator_version, "
                    "topic, state) VALUES "
                )
                .format(
                    SQL("; ").join(self.lock_table_statements),
                    Identifier(self.channel_name),
                    Identifier(self.datastore.schema),
                    Identifier(self.events_table_name),
                )
                .as_bytes(connection)
            )
        literal = Escaping(connection.pgconn).escape_literal
        encoding = connection.info.encoding
        values = b", ".join(
            # E'\\x...' is the hex bytea whatever standard_conforming_strings says
            b"(%s, %d, %s, E'\\\\x%s'::bytea)"
            % (
                literal(str(event.originator_id).encode(encoding)),
                event.originator_version,
                literal(event.topic.encode(encoding)),
                hexlify(event.state),
            )
            for event in events
        )
        return self._head + values + b" RETURNING notification_id; COMMIT"


def _returned_ids(results: Sequence[PGresult], connection: psycopg.Connection[Any]) -> list[int]:
    """The notification ids an insert returned, or the first error the server sent."""
    ids: list[int] = []
    for result in results:
        if result.status == ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)
        if result.status == ExecStatus.TUPLES_OK:
            ids = [int(result.get_value(row, 0) or b"") for row in range(result.ntuples)]
    return ids


def _until_synced(pgconn: PGconn) -> PQGen[list[PGresult]]:
    """Flushes a pipeline and reads its results up to its sync (after an error, the server
    answers the statements that follow as aborted, up to the sync)."""
    yield from generators.send(pgconn)
    results: list[PGresult] = []
    while not results or results[-1].status != ExecStatus.PIPELINE_SYNC:
        results += yield from generators.fetch_many(pgconn)
    return results


# PostgreSQL's binary array format: a header (dimensions, flags, element type, length, lower
# bound), then each element as its length and its bytes.
_TEXT, _INT8, _BYTEA = 25, 20, 17
_ARRAY_TYPES = [1009, 1016, 1009, 1001]  # text[], int8[], text[], bytea[]
_BINARY = [1, 1, 1, 1]
_ARRAY_HEAD = struct.Struct("!iiIii")
_LENGTH = struct.Struct("!i")
_INT8_ITEM = struct.Struct("!iq")


def _array(element_type: int, items: list[bytes]) -> bytes:
    head = _ARRAY_HEAD.pack(1, 0, element_type, len(items), 1)
    return head + b"".join(_LENGTH.pack(len(item)) + item for item in items)


def _int8_array(items: list[int]) -> bytes:
    head = _ARRAY_HEAD.pack(1, 0, _INT8, len(items), 1)
    return head + b"".join(_INT8_ITEM.pack(8, item) for item in items)


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
                raise _translated(error, sqlite3) from error
            return ids

    def release(self) -> None:
        """Closes the writer connection."""
        with self._writing:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


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
