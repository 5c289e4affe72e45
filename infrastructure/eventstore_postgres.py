"""The ledger's PostgreSQL recorder (the port is `infrastructure/eventstore.py`): the library's,
each insert sent in one round trip on a connection it keeps."""

from __future__ import annotations

import struct
import threading
from binascii import hexlify
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import generators, waiting
from psycopg.abc import PQGen
from psycopg.pq import Escaping, ExecStatus, PipelineStatus, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult
from psycopg.sql import SQL, Identifier

from infrastructure import postgres
from infrastructure.eventstore import translated

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
                raise translated(error, psycopg) from error

    def select_runs(self, run_ids: list[str]) -> list[StoredEvent]:
        """The stored events of the runs, ordered by run and version."""
        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with self.datastore.get_connection() as connection, connection.cursor() as cursor:
            cursor.execute(statement, (run_ids,))
            return [
                StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
                for r in cursor.fetchall()
            ]

    def create_table(self) -> None:
        """The library's tables, created only where missing, once (infrastructure/postgres.py)."""
        postgres.create_tables_once(self, self.events_table_name, create=super().create_table)

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
                raise translated(error, psycopg) from error
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
