"""The read model on PostgreSQL: timestamptz, jsonb, and LISTEN/NOTIFY as a hint."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal, Placeholder

from domain.status import RunStatus
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
from projections.rollup import (
    COUNT_COLUMNS,
    CREATED_COLUMNS,
    DAY_COLUMNS,
    FINISHED_COLUMNS,
    HOUR_COLUMNS,
    SEGMENTS,
    DayTallies,
    Placement,
    hour_totals,
    pack,
    totals,
    unpack,
)

DURATION_COLUMNS = ("workspace_id", "subject_id", "day", "segment", "durations")

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
        self.schema_name = datastore.schema or "public"
        self.schema = schema = Identifier(self.schema_name)
        self.t = Composed([schema, SQL("."), Identifier(table)])
        self.events = Composed([schema, SQL("."), Identifier(events_table)])
        self.dead = Composed([schema, SQL("."), Identifier(f"{table}_dead_letters")])
        self.days_name = f"{table}_days"
        self.days = Composed([schema, SQL("."), Identifier(self.days_name)])
        self.durations_name = f"{table}_durations"
        self.durations = Composed([schema, SQL("."), Identifier(self.durations_name)])
        self.hours_name = f"{table}_hours"
        self.hours = Composed([schema, SQL("."), Identifier(self.hours_name)])
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
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (workspace_id text NOT NULL, "
                "subject_id text NOT NULL, day date NOT NULL, {}, "
                "CONSTRAINT {} PRIMARY KEY (workspace_id, day, subject_id))"
            ).format(
                self.days,
                SQL(", ").join(
                    SQL("{} bigint NOT NULL DEFAULT 0").format(Identifier(c)) for c in COUNT_COLUMNS
                ),
                Identifier(f"{self.days_name}_pkey_{token}"),
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (workspace_id text NOT NULL, "
                "subject_id text NOT NULL, day date NOT NULL, segment bigint NOT NULL, "
                "durations bytea NOT NULL, "
                "CONSTRAINT {} PRIMARY KEY (workspace_id, day, subject_id, segment))"
            ).format(self.durations, Identifier(f"{self.durations_name}_pkey_{token}")),
            # Sorted durations hardly compress; compressing them costs more than it saves.
            SQL("ALTER TABLE {} ALTER COLUMN durations SET STORAGE EXTERNAL").format(
                self.durations
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (workspace_id text NOT NULL, "
                "subject_id text NOT NULL, hour timestamptz NOT NULL, {}, "
                "CONSTRAINT {} PRIMARY KEY (workspace_id, hour, subject_id))"
            ).format(
                self.hours,
                SQL(", ").join(
                    SQL("{} bigint NOT NULL DEFAULT 0").format(Identifier(c))
                    for c in HOUR_COLUMNS[3:]
                ),
                Identifier(f"{self.hours_name}_pkey_{token}"),
            ),
        ]
        self._rollup_statements()
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
        previous: Mapping[str, RunState | None] | None = None,
    ) -> None:
        rows = [to_row(state) for state in states]
        with self.datastore.transaction(commit=True) as cursor:
            self._insert_tracking(cursor, tracking)
            if generation is not None:
                current = self._max_tracking_id(self.generation_name, cursor) or 0
                if current != generation:
                    raise IntegrityError(f"the read model was rebuilt (generation {current})")
            if rows:
                tallies = self._tallies(cursor, states, previous)
                self._upsert(cursor, rows)
                self._roll(cursor, tallies, tracking.notification_id)
            if dead:
                cursor.executemany(
                    SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(
                        self.dead
                    ),
                    [(d.position, d.run_id, d.event_type, d.error, d.recorded_at) for d in dead],
                )

    def _rollup_statements(self) -> None:
        columns = SQL(", ").join(map(Identifier, DAY_COLUMNS))
        days = SQL(
            "INSERT INTO {days} AS d ({columns}) SELECT * FROM unnest({values}) "
            "ON CONFLICT (workspace_id, day, subject_id) DO UPDATE SET {counts}"
        ).format(
            days=self.days,
            columns=columns,
            values=_arrays(("text", "text", "date", *["bigint"] * len(COUNT_COLUMNS))),
            counts=SQL(", ").join(
                SQL("{0} = d.{0} + excluded.{0}").format(Identifier(c)) for c in COUNT_COLUMNS
            ),
        )
        self.select_placed = SQL(
            "SELECT id, version, workspace_id, subject_id, status, created_at, completed_at, "
            "duration_ms FROM {} WHERE id = ANY(%s) FOR UPDATE"
        ).format(self.t)
        self.add_segments = SQL(
            "INSERT INTO {} (workspace_id, subject_id, day, segment, durations) "
            "SELECT * FROM unnest({})"
        ).format(self.durations, _arrays(("text", "text", "date", "bigint", "bytea")))
        keys = "(workspace_id, subject_id, day) IN (SELECT * FROM unnest({}))"
        key_arrays = _arrays(("text", "text", "date"))
        # The final SELECT sees the table as it was before this statement: a day is crowded
        # when it had SEGMENTS already, so has one more now.
        crowded = SQL(
            "SELECT workspace_id, subject_id, day FROM {} WHERE " + keys + " "
            "GROUP BY 1, 2, 3 HAVING count(*) >= %s"
        ).format(self.durations, key_arrays)
        self.take_segments = SQL(
            "DELETE FROM {} WHERE " + keys + " RETURNING workspace_id, subject_id, day, durations"
        ).format(self.durations, key_arrays)
        self.recount_durations = SQL(
            "SELECT workspace_id, subject_id, (completed_at AT TIME ZONE 'UTC')::date, 0, "
            "string_agg(int8send(duration_ms), '' ORDER BY duration_ms) FROM {} "
            "WHERE completed_at IS NOT NULL AND duration_ms IS NOT NULL GROUP BY 1, 2, 3"
        ).format(self.t)
        utc_day = "({} AT TIME ZONE 'UTC')::date"
        created = [
            SQL("(status = {})::int").format(Literal(c.removeprefix("created_")))
            for c in CREATED_COLUMNS
        ]
        finished = [
            SQL("(status = {})::int").format(Literal(c.removeprefix("finished_")))
            for c in FINISHED_COLUMNS
        ]
        zeros = [SQL("0")]
        contributions = SQL(
            "SELECT workspace_id, subject_id, {created_day} AS day, {created}, {no_finished} "
            "FROM {t} UNION ALL "
            "SELECT workspace_id, subject_id, {completed_day}, {no_created}, {finished} "
            "FROM {t} WHERE completed_at IS NOT NULL"
        ).format(
            t=self.t,
            created_day=SQL(utc_day.format("created_at")),
            completed_day=SQL(utc_day.format("completed_at")),
            created=SQL(", ").join(
                SQL("{} AS {}").format(e, Identifier(c))
                for e, c in zip(created, CREATED_COLUMNS, strict=True)
            ),
            finished=SQL(", ").join(finished),
            no_created=SQL(", ").join(zeros * len(CREATED_COLUMNS)),
            no_finished=SQL(", ").join(
                SQL("0 AS {}").format(Identifier(c)) for c in FINISHED_COLUMNS
            ),
        )
        hours = SQL(
            "INSERT INTO {hours} AS h ({columns}) SELECT * FROM unnest({values}) "
            "ON CONFLICT (workspace_id, hour, subject_id) DO UPDATE SET {counts}"
        ).format(
            hours=self.hours,
            columns=SQL(", ").join(map(Identifier, HOUR_COLUMNS)),
            values=_arrays(("text", "text", "timestamptz", *["bigint"] * (len(HOUR_COLUMNS) - 3))),
            counts=SQL(", ").join(
                SQL("{0} = h.{0} + excluded.{0}").format(Identifier(c)) for c in HOUR_COLUMNS[3:]
            ),
        )
        self.roll = SQL(
            "WITH days AS ({days}), hours AS ({hours}), segments AS ({segments}) {crowded}"
        ).format(days=days, hours=hours, segments=self.add_segments, crowded=crowded)
        utc_hour = "date_bin('1 hour', {}, TIMESTAMPTZ '2000-01-01 00:00Z')"
        self.recount_hours = SQL(
            "SELECT workspace_id, subject_id, hour, {sums} FROM ("
            "SELECT workspace_id, subject_id, {created_hour} AS hour, 1 AS created, "
            "{no_finished} FROM {t} UNION ALL "
            "SELECT workspace_id, subject_id, {completed_hour}, 0, {finished} FROM {t} "
            "WHERE completed_at IS NOT NULL) AS contributions GROUP BY 1, 2, 3"
        ).format(
            t=self.t,
            sums=SQL(", ").join(SQL("sum({})").format(Identifier(c)) for c in HOUR_COLUMNS[3:]),
            created_hour=SQL(utc_hour.format("created_at")),
            completed_hour=SQL(utc_hour.format("completed_at")),
            no_finished=SQL(", ").join(
                SQL("0 AS {}").format(Identifier(c)) for c in FINISHED_COLUMNS
            ),
            finished=SQL(", ").join(finished),
        )
        self.recount = SQL(
            "SELECT workspace_id, subject_id, day, {sums} "
            "FROM ({contributions}) AS contributions GROUP BY 1, 2, 3"
        ).format(
            sums=SQL(", ").join(SQL("sum({})").format(Identifier(c)) for c in COUNT_COLUMNS),
            contributions=contributions,
        )

    def _roll(self, cursor: Any, tallies: DayTallies, segment: int) -> None:
        """Applies a batch's changes to the rollups in one statement (each a column an
        array): days and hours, and each day's new durations as a segment of its own; then
        merges the segments of the days that now have more than SEGMENTS into one."""
        timed = tallies.durations()
        cursor.execute(
            self.roll,
            (
                *_columns(tallies.rows(), len(DAY_COLUMNS)),
                *_columns(tallies.hour_rows(), len(HOUR_COLUMNS)),
                *_columns([(*key, segment, pack(values)) for *key, values in timed], 5),
                *_columns([row[:3] for row in timed], 3),
                SEGMENTS,
            ),
        )
        if not (crowded := cursor.fetchall()):
            return
        cursor.execute(
            self.take_segments,
            _columns([(row["workspace_id"], row["subject_id"], row["day"]) for row in crowded], 3),
        )
        merged: dict[tuple[str, str, Any], list[int]] = {}
        for row in cursor.fetchall():
            key = (row["workspace_id"], row["subject_id"], row["day"])
            merged.setdefault(key, []).extend(unpack(row["durations"]))
        rows = [(*key, segment, pack(sorted(values))) for key, values in merged.items()]
        cursor.execute(self.add_segments, _columns(rows, 5))

    def _tallies(
        self,
        cursor: Any,
        states: Sequence[RunState],
        previous: Mapping[str, RunState | None] | None,
    ) -> DayTallies:
        """How writing these states moves the rollups (a state older than its row moves
        nothing: the upsert will not write it)."""
        tallies = DayTallies()
        if previous is not None:
            for state in states:
                prior = previous.get(state.id)
                if prior is None or prior.version < state.version:
                    had = None if prior is None else Placement.of(prior)
                    tallies.move(had, Placement.of(state))
            return tallies
        cursor.execute(self.select_placed, ([state.id for state in states],))
        rows = {row["id"]: row for row in cursor.fetchall()}
        for state in states:
            row = rows.get(state.id)
            if row is not None and row["version"] >= state.version:
                continue
            before = None
            if row is not None:
                before = Placement(
                    row["workspace_id"],
                    row["subject_id"],
                    RunStatus(row["status"]),
                    row["created_at"],
                    row["completed_at"],
                    row["duration_ms"],
                )
            tallies.move(before, Placement.of(state))
        return tallies

    def create_table(self) -> None:
        """Creates what is missing; rollups created beside existing rows (a read model from
        before them) are filled from the rows."""
        schema = self.datastore.schema or "public"
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT count(to_regclass(name)) AS found FROM unnest(%s::text[]) AS name",
                ([f'"{schema}"."{name}"' for name in self._rollup_names],),
            )
            row = cursor.fetchone()
            fresh = row is None or row["found"] < len(self._rollup_names)
        super().create_table()
        if fresh:
            self.refill_rollup()

    @property
    def _rollup_names(self) -> tuple[str, ...]:
        return (self.days_name, self.durations_name, self.hours_name)

    def refill_rollup(self) -> None:
        """Recounts the rollups from the rows (writers wait meanwhile)."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("LOCK TABLE {} IN SHARE MODE").format(self.t))
            for table, columns, recount in (
                (self.days, DAY_COLUMNS, self.recount),
                (self.durations, DURATION_COLUMNS, self.recount_durations),
                (self.hours, HOUR_COLUMNS, self.recount_hours),
            ):
                cursor.execute(SQL("DELETE FROM {}").format(table))
                cursor.execute(
                    SQL("INSERT INTO {} ({}) {}").format(
                        table, SQL(", ").join(map(Identifier, columns)), recount
                    )
                )

    def rollup_disagreements(self) -> list[tuple[Any, Any, Any]]:
        found: list[tuple[Any, Any, Any]] = []
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(SQL("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            rows = cursor.connection.cursor(row_factory=tuple_row)
            for table, columns, recount, tally in (
                (self.days, DAY_COLUMNS, self.recount, totals),
                (self.hours, HOUR_COLUMNS, self.recount_hours, hour_totals),
            ):
                rows.execute(
                    SQL("SELECT {} FROM {}").format(SQL(", ").join(map(Identifier, columns)), table)
                )
                stored: dict[Any, Any] = tally(rows.fetchall())
                rows.execute(recount)
                recounted: dict[Any, Any] = tally(rows.fetchall())
                found += [
                    (key, _named(columns, stored.get(key)), _named(columns, recounted.get(key)))
                    for key in sorted(stored.keys() | recounted.keys())
                    if stored.get(key) != recounted.get(key)
                ]
            rows.execute(
                SQL("SELECT workspace_id, subject_id, day, durations FROM {}").format(
                    self.durations
                )
            )
            kept = _durations(rows.fetchall())
            rows.execute(self.recount_durations)
            due = _durations(row[:3] + row[4:] for row in rows.fetchall())
            found += [
                (key, {"durations": kept.get(key)}, {"durations": due.get(key)})
                for key in sorted(kept.keys() | due.keys())
                if kept.get(key) != due.get(key)
            ]
        return found

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
            cursor.execute(SQL("DROP TABLE IF EXISTS {}").format(self.days))
            cursor.execute(SQL("DROP TABLE IF EXISTS {}").format(self.hours))
            cursor.execute(SQL("DROP TABLE IF EXISTS {}").format(self.durations))
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
            for suffix in ("", "_dead_letters", "_days", "_durations", "_hours"):
                source, target = self.table + suffix, live.table + suffix
                cursor.execute(
                    SQL("DROP TABLE IF EXISTS {}").format(
                        Composed([self.schema, SQL("."), Identifier(target)])
                    )
                )
                cursor.execute(
                    SQL("ALTER TABLE {} RENAME TO {}").format(
                        Composed([self.schema, SQL("."), Identifier(source)]), Identifier(target)
                    )
                )
                self._rename_indexes(cursor, target, source, target)
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

    def _rename_indexes(self, cursor: Any, table: str, old: str, new: str) -> None:
        """Renames the table's indexes (and so its constraints) named after `old` to be
        named after `new`: a swapped-in table keeps no trace of the rebuild in its names."""
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (self.schema_name, table),
        )
        for name in [row["indexname"] for row in cursor.fetchall()]:
            if name.startswith(old + "_"):
                cursor.execute(
                    SQL("ALTER INDEX {} RENAME TO {}").format(
                        Composed([self.schema, SQL("."), Identifier(name)]),
                        Identifier(new + name[len(old) :]),
                    )
                )

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


def _named(columns: Sequence[str], figures: Sequence[Any] | None) -> dict[str, Any] | None:
    """A rollup row's figures by column, for `verify` to print."""
    return None if figures is None else dict(zip(columns[3:], figures, strict=True))


def _durations(rows: Iterable[Sequence[Any]]) -> dict[Any, list[int]]:
    """(workspace, subject, day, packed segment) rows: each day's durations, in order."""
    days: dict[Any, list[int]] = {}
    for workspace, subject, day, packed in rows:
        days.setdefault((workspace, subject, day), []).extend(unpack(packed))
    return {key: sorted(values) for key, values in days.items() if values}


def _arrays(types: Sequence[str]) -> Composed:
    return SQL(", ").join(SQL("%s::{}[]").format(SQL(kind)) for kind in types)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows of `width` values as that many columns."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width
