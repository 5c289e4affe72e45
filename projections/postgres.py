"""The read model on PostgreSQL: timestamptz, jsonb, and LISTEN/NOTIFY as a hint."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Composed, Identifier, Placeholder

from projections.fold import RunState
from projections.readmodel import (
    COLUMNS,
    INDEXES,
    INTEGER_COLUMNS,
    JSON_COLUMNS,
    TIME_COLUMNS,
    DeadLetter,
    RunsView,
    from_row,
    to_row,
)

COPY_THRESHOLD = 50
"""From how many rows a batch is written with COPY rather than executemany."""

_TYPES = dict.fromkeys(INTEGER_COLUMNS, "bigint")
_TYPES |= dict.fromkeys(TIME_COLUMNS, "timestamptz")
_TYPES |= dict.fromkeys(JSON_COLUMNS, "jsonb")


class PostgresRunsView(PostgresTrackingRecorder, RunsView):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        table: str,
        events_table: str,
        application_name: str = "runledger",
    ) -> None:
        super().__init__(datastore, tracking_table_name="workflow_runs_tracking")
        self.table, self.events_table = table, events_table
        self.application_name = application_name
        self.channel = events_table.replace(".", "_")
        self._listener: psycopg.Connection[Any] | None = None
        self.schema = schema = Identifier(datastore.schema or "public")
        self.t = Composed([schema, SQL("."), Identifier(table)])
        self.events = Composed([schema, SQL("."), Identifier(events_table)])
        self.dead = Composed([schema, SQL("."), Identifier(f"{table}_dead_letters")])
        token = secrets.token_hex(3)
        columns = SQL(", ").join(
            SQL("{} {}").format(Identifier(c), SQL(_TYPES.get(c, "text"))) for c in COLUMNS
        )
        self.sql_create_statements += [
            SQL("CREATE TABLE IF NOT EXISTS {} ({}, CONSTRAINT {} PRIMARY KEY (id))").format(
                self.t, columns, Identifier(f"{table}_pkey_{token}")
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, run_id text, "
                "event_type text, error text, recorded_at timestamptz)"
            ).format(self.dead),
            *(
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    Identifier(f"{table}_{name}_{token}"),
                    self.t,
                    SQL(spec),
                )
                for name, spec in INDEXES
            ),
        ]
        values = SQL(", ").join(
            SQL("{}::jsonb").format(Placeholder(c)) if c in JSON_COLUMNS else Placeholder(c)
            for c in COLUMNS
        )
        updates = SQL(", ").join(
            SQL("{0} = excluded.{0}").format(Identifier(c)) for c in COLUMNS[1:]
        )
        self.upsert = SQL(
            "INSERT INTO {t} ({columns}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET "
            "{updates} WHERE excluded.version > {t}.version"
        ).format(
            t=self.t,
            columns=SQL(", ").join(map(Identifier, COLUMNS)),
            values=values,
            updates=updates,
        )
        staging = Identifier(f"{table}_staging")
        self.create_staging = SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
        ).format(staging, self.t)
        self.copy_staging = SQL("COPY {} ({}) FROM STDIN").format(
            staging, SQL(", ").join(map(Identifier, COLUMNS))
        )
        self.merge_staging = SQL(
            "INSERT INTO {t} SELECT * FROM {staging} ON CONFLICT (id) DO UPDATE SET {updates} "
            "WHERE excluded.version > {t}.version"
        ).format(t=self.t, staging=staging, updates=updates)
        self.select = SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(
            SQL(", ").join(
                SQL("{0}::text AS {0}").format(Identifier(c))
                if c in JSON_COLUMNS
                else Identifier(c)
                for c in COLUMNS
            ),
            self.t,
        )

    def states(self, run_ids: Collection[str]) -> dict[str, RunState]:
        return {run_id: from_row(row) for run_id, row in self.rows(run_ids).items()}

    def rows(self, run_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        if not run_ids:
            return {}
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.select, (list(run_ids),))
            return {row["id"]: dict(row) for row in cursor.fetchall()}

    def write(
        self,
        states: Sequence[RunState],
        tracking: Tracking,
        dead: Sequence[DeadLetter] = (),
        generation: int | None = None,
    ) -> None:
        rows = [to_row(state) for state in states]
        with self.datastore.transaction(commit=True) as cursor:
            self._insert_tracking(cursor, tracking)
            if generation is not None:
                current = self._max_tracking_id(self.generation_name, cursor) or 0
                if current != generation:
                    raise IntegrityError(f"the read model was rebuilt (generation {current})")
            if rows:
                self._upsert(cursor, rows)
            if dead:
                cursor.executemany(
                    SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(
                        self.dead
                    ),
                    [(d.position, d.run_id, d.event_type, d.error, d.recorded_at) for d in dead],
                )

    def _upsert(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        """Many rows: COPY into a temporary table, then one INSERT ... ON CONFLICT; a few rows:
        an executemany, which costs less than setting up a COPY."""
        if len(rows) < COPY_THRESHOLD:
            cursor.executemany(self.upsert, rows)
            return
        cursor.execute(self.create_staging)
        with cursor.copy(self.copy_staging) as copy:
            for row in rows:
                copy.write_row([row[column] for column in COLUMNS])
        cursor.execute(self.merge_staging)

    def run_ids_without_events(self, position: int) -> list[str]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                SQL(
                    "SELECT id FROM {} r WHERE NOT EXISTS (SELECT 1 FROM {} e "
                    "WHERE e.originator_id = r.id AND e.notification_id <= %s) ORDER BY id"
                ).format(self.t, self.events),
                (position,),
            )
            return [row["id"] for row in cursor.fetchall()]

    def event_run_ids(self, after: str, limit: int, position: int) -> list[str]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                SQL(
                    "SELECT originator_id FROM {} WHERE originator_version = 1 AND "
                    "originator_id > %s AND notification_id <= %s ORDER BY originator_id LIMIT %s"
                ).format(self.events),
                (after, position, limit),
            )
            return [row["originator_id"] for row in cursor.fetchall()]

    def events_of(self, run_ids: Collection[str], position: int) -> Iterator[StoredEvent]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                SQL(
                    "SELECT originator_id, originator_version, topic, state FROM {} "
                    "WHERE originator_id = ANY(%s) AND notification_id <= %s "
                    "ORDER BY originator_id, originator_version"
                ).format(self.events),
                (list(run_ids), position),
            )
            rows = cursor.fetchall()
        for row in rows:
            yield StoredEvent(
                row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"])
            )

    def dead_letter_count(self) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(SQL("SELECT count(*) AS n FROM {}").format(self.dead))
            row = cursor.fetchone()
            return int(row["n"]) if row else 0

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("DROP TABLE IF EXISTS {}").format(self.t))
            cursor.execute(
                SQL("DELETE FROM {} WHERE application_name = %s").format(self._tracking_table()),
                (self.application_name,),
            )
        self.create_table()

    def swap_into(self, live: RunsView) -> bool:
        tracking = self._tracking_table()
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                SQL(
                    "SELECT application_name, notification_id FROM {} "
                    "WHERE application_name IN (%s, %s, %s) FOR UPDATE"
                ).format(tracking),
                (self.application_name, live.application_name, live.generation_name),
            )
            positions = {row["application_name"]: row["notification_id"] for row in cursor}
            mine = positions.get(self.application_name) or 0
            if (positions.get(live.application_name) or 0) > mine:
                return False
            generation = (positions.get(live.generation_name) or 0) + 1
            live_dead = f"{live.table}_dead_letters"
            for source, target in ((self.t, live.table), (self.dead, live_dead)):
                cursor.execute(
                    SQL("DROP TABLE IF EXISTS {}").format(
                        Composed([self.schema, SQL("."), Identifier(target)])
                    )
                )
                cursor.execute(
                    SQL("ALTER TABLE {} RENAME TO {}").format(source, Identifier(target))
                )
            cursor.executemany(
                SQL(
                    "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (application_name) "
                    "DO UPDATE SET notification_id = excluded.notification_id"
                ).format(tracking),
                [(live.application_name, mine), (live.generation_name, generation)],
            )
            cursor.execute(
                SQL("DELETE FROM {} WHERE application_name = %s").format(tracking),
                (self.application_name,),
            )
        return True

    def wait_for_news(self, timeout: float) -> None:
        if self._listener is None or self._listener.closed:
            pool = self.datastore.pool  # connect as the pool does, to the same database
            kwargs = pool.kwargs() if callable(pool.kwargs) else (pool.kwargs or {})
            settings = {k: v for k, v in kwargs.items() if k != "row_factory"}
            self._listener = psycopg.connect(str(pool.conninfo), autocommit=True, **settings)
            self._listener.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
        for _ in self._listener.notifies(timeout=timeout, stop_after=1):
            break

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def _tracking_table(self) -> Composed:
        return Composed(
            [
                Identifier(self.datastore.schema or "public"),
                SQL("."),
                Identifier(self.tracking_table_name),
            ]
        )
