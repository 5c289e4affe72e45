"""The read model on SQLite: times as toISOString() text (which sorts as time), JSON as text."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent, Tracking
from eventsourcing.sqlite import (
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
    SQLiteTransaction,
)

from domain import timestamps
from projections.fold import RunState
from projections.readmodel import (
    COLUMNS,
    INDEXES,
    INTEGER_COLUMNS,
    SHADOW_SUFFIX,
    TIME_COLUMNS,
    DeadLetter,
    RunsView,
    from_row,
    to_row,
)

POLL_INTERVAL = 0.2
"""SQLite has no notifications: a follower polls the log this often."""


def _column_type(column: str) -> str:
    if column == "id":
        return "TEXT PRIMARY KEY"
    return "INTEGER" if column in INTEGER_COLUMNS else "TEXT"


class SQLiteRunsView(SQLiteTrackingRecorder, RunsView):
    def __init__(
        self,
        datastore: SQLiteDatastore,
        *,
        table: str,
        events_table: str,
        application_name: str = "runledger",
    ) -> None:
        self.table, self.events_table = table, events_table
        self.application_name = application_name
        self.dead_table = f"{table}_dead_letters"
        super().__init__(datastore)
        columns = ", ".join(COLUMNS)
        values = ", ".join(f":{column}" for column in COLUMNS)
        updates = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
        self.upsert = (
            f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT (id) DO UPDATE "
            f"SET {updates} WHERE excluded.version > {table}.version"
        )

    def construct_create_table_statements(self) -> list[str]:
        columns = ", ".join(f"{column} {_column_type(column)}" for column in COLUMNS)
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.table} ({columns})",
            f"CREATE TABLE IF NOT EXISTS {self.dead_table} (position INTEGER PRIMARY KEY, "
            "run_id TEXT, event_type TEXT, error TEXT, recorded_at TEXT)",
        ]

    def create_table(self) -> None:
        """The library's, in a transaction that takes SQLite's write lock as it begins
        (`BEGIN IMMEDIATE`), waiting for it up to the lock timeout like any writer; and not at
        all when every table is there (a reader such as `lag` takes no lock).

        The library's begins deferred and reads before it writes, and SQLite cannot wait to
        turn a read into a write while another process writes: it fails at once with
        "database is locked" (`project` or `lag` beside `create`s on a fresh file often did).
        It also reads whether the tracking table exists before its transaction, so a second
        process making the tables at the same time inserted the tracking table's first row
        (its migration mark) again and failed; here that is read under the lock."""
        if not self._missing_tables():
            return
        with (
            self.datastore.get_connection(commit=True) as connection,
            _Immediate(connection, commit=True) as cursor,
            cursor,
        ):
            cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tracking'")
            self.tracking_table_exists = cursor.fetchone() is not None
            migration = None
            if self.tracking_table_exists:
                migration = self._max_tracking_id(self.table_migration_identifier, cursor)
            self.tracking_migration_previous = self.tracking_migration_current = migration
            self._create_table(cursor)

    def _missing_tables(self) -> bool:
        names = ("tracking", self.table, self.dead_table)
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?)",
                names,
            )
            return int(cursor.fetchone()[0]) < len(names)

    def _create_table(self, c: SQLiteCursor) -> None:
        c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,))
        is_new = c.fetchone() is None
        super()._create_table(c)
        if is_new:  # indexes come with the table, once
            for statement in self.index_statements():
                c.execute(statement)

    def index_statements(self) -> list[str]:
        """Indexes for the dashboard's queries, named after the live table even on a rebuild's
        (SQLite cannot rename an index, and a swapped-in table keeps its indexes' names),
        and uniquely, so a rebuilt table's indexes never clash with the live one's."""
        token = secrets.token_hex(3)
        named = self.table.removesuffix(SHADOW_SUFFIX)
        return [
            f"CREATE INDEX IF NOT EXISTS {named}_{name}_{token} ON {self.table} ({columns})"
            for name, columns in INDEXES
        ]

    def states(self, run_ids: Collection[str]) -> dict[str, RunState]:
        return {run_id: from_row(row) for run_id, row in self.rows(run_ids).items()}

    def rows(self, run_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        ids = list(run_ids)
        with self.datastore.transaction(commit=False) as cursor:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                cursor.execute(f"SELECT * FROM {self.table} WHERE id IN ({marks})", chunk)
                for row in cursor.fetchall():
                    found[row["id"]] = _decode(dict(row))
        return found

    def write(
        self,
        states: Sequence[RunState],
        tracking: Tracking,
        dead: Sequence[DeadLetter] = (),
        generation: int | None = None,
        previous: Mapping[str, RunState | None] | None = None,
    ) -> None:
        rows = [_encode(to_row(state)) for state in states]
        with self.datastore.transaction(commit=True) as cursor:
            self._insert_tracking(cursor, tracking)
            if generation is not None:
                current = self._max_tracking_id(self.generation_name, cursor) or 0
                if current != generation:
                    raise IntegrityError(f"the read model was rebuilt (generation {current})")
            cursor.executemany(self.upsert, rows)
            cursor.executemany(
                f"INSERT OR REPLACE INTO {self.dead_table} VALUES (?, ?, ?, ?, ?)",
                [
                    (d.position, d.run_id, d.event_type, d.error, timestamps.to_iso(d.recorded_at))
                    for d in dead
                ],
            )

    def run_ids_without_events(self, position: int) -> list[str]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT id FROM {self.table} r WHERE NOT EXISTS (SELECT 1 FROM "
                f"{self.events_table} e WHERE e.originator_id = r.id AND e.rowid <= ?) ORDER BY id",
                (position,),
            )
            return [row[0] for row in cursor.fetchall()]

    def event_run_ids(self, after: str, limit: int, position: int) -> list[str]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT originator_id FROM {self.events_table} WHERE originator_version = 1 "
                "AND originator_id > ? AND rowid <= ? ORDER BY originator_id LIMIT ?",
                (after, position, limit),
            )
            return [row[0] for row in cursor.fetchall()]

    def events_of(self, run_ids: Collection[str], position: int) -> Iterator[StoredEvent]:
        ids = list(run_ids)
        marks = ", ".join("?" * len(ids))
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT originator_id, originator_version, topic, state FROM {self.events_table} "
                f"WHERE originator_id IN ({marks}) AND rowid <= ? "
                "ORDER BY originator_id, originator_version",
                [*ids, position],
            )
            rows = cursor.fetchall()
        for row in rows:
            yield StoredEvent(row[0], row[1], row[2], row[3])

    def dead_letter_count(self) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT count(*) FROM {self.dead_table}")
            return int(cursor.fetchone()[0])

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
            cursor.execute(
                "DELETE FROM tracking WHERE application_name = ?", (self.application_name,)
            )
        self.create_table()

    def swap_into(self, live: RunsView) -> bool:
        live_dead = f"{live.table}_dead_letters"
        try:
            with self.datastore.transaction(commit=True) as cursor:
                # A write first, so that the transaction holds the write lock from the start.
                cursor.execute("UPDATE tracking SET notification_id = notification_id")
                mine = self._max_tracking_id(self.application_name, cursor) or 0
                if (self._max_tracking_id(live.application_name, cursor) or 0) > mine:
                    raise _LiveIsAhead
                generation = (self._max_tracking_id(live.generation_name, cursor) or 0) + 1
                for source, target in ((self.table, live.table), (self.dead_table, live_dead)):
                    cursor.execute(f"DROP TABLE IF EXISTS {target}")
                    cursor.execute(f"ALTER TABLE {source} RENAME TO {target}")
                cursor.executemany(
                    "INSERT INTO tracking VALUES (?, ?) ON CONFLICT (application_name) "
                    "DO UPDATE SET notification_id = excluded.notification_id",
                    [(live.application_name, mine), (live.generation_name, generation)],
                )
                cursor.execute(
                    "DELETE FROM tracking WHERE application_name = ?", (self.application_name,)
                )
        except _LiveIsAhead:
            return False
        return True

    def wait_for_news(self, timeout: float) -> None:
        time.sleep(min(timeout, POLL_INTERVAL))


class _Immediate(SQLiteTransaction):
    """The library's transaction, begun with `BEGIN IMMEDIATE`: it holds the write lock from
    the start, so that it waits for another writer instead of failing halfway."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:  # the lock timeout passed: as the library reports it
            raise OperationalError(error) from error
        return cursor


class _LiveIsAhead(Exception):
    """Rolls the swap back: the live read model has applied more than the shadow."""


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    for column in TIME_COLUMNS:
        if row[column] is not None:
            row[column] = timestamps.to_iso(row[column])
    return row


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for column in TIME_COLUMNS:
        if row[column] is not None:
            row[column] = datetime.fromisoformat(row[column])
    return row
