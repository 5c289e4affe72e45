"""The dashboard queries on PostgreSQL: timestamptz windows, `percentile_disc` for the
durations, `date_bin` from the first bucket's start (a UTC hour or day) for the buckets.

Every value is a parameter; the SQL is composed with psycopg.sql from fixed fragments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time
from functools import partial
from itertools import chain
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier

from domain.status import OPEN_STATUSES
from projections.queries import (
    Bucket,
    DurationRow,
    RunQueries,
    RunsQuery,
    StatsQuery,
    StatsRows,
    StuckQuery,
    TreeQuery,
)
from projections.readmodel import JSON_COLUMNS, VIEW_COLUMNS
from projections.rollup import CREATED_COLUMNS, FINISHED_COLUMNS, HOUR_COLUMNS, unpack

_NEWEST_FIRST = SQL("ORDER BY created_at DESC, id DESC LIMIT %(limit)s")
_IDLEST_FIRST = SQL("ORDER BY updated_at, id LIMIT %(limit)s")
_SNAPSHOT = SQL("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


class PostgresRunQueries(RunQueries):
    def __init__(self, datastore: PostgresDatastore, *, table: str) -> None:
        self.datastore = datastore
        schema = Identifier(datastore.schema or "public")
        self.t = Composed([schema, SQL("."), Identifier(table)])
        self.days = Composed([schema, SQL("."), Identifier(f"{table}_days")])
        self.hours = Composed([schema, SQL("."), Identifier(f"{table}_hours")])
        self.durations = Composed([schema, SQL("."), Identifier(f"{table}_durations")])
        self.columns = SQL(", ").join(
            SQL("{0}::text AS {0}").format(Identifier(c)) if c in JSON_COLUMNS else Identifier(c)
            for c in VIEW_COLUMNS
        )

    def _runs(self, query: RunsQuery) -> list[Sequence[Any]]:
        where: list[Composable] = [SQL("workspace_id = %(workspace_id)s")]
        params: dict[str, Any] = {"workspace_id": query.workspace_id, "limit": query.limit + 1}
        for column, value in (
            ("triggered_by", query.triggered_by),
            ("subject_id", query.subject_id),
            ("parent_run_id", query.parent_run_id),
        ):
            if value is not None:
                where.append(SQL("{} = %({})s").format(Identifier(column), SQL(column)))
                params[column] = value
        if query.created_from is not None:
            where.append(SQL("created_at >= %(created_from)s"))
            params["created_from"] = query.created_from
        if query.created_to is not None:
            where.append(SQL("created_at < %(created_to)s"))
            params["created_to"] = query.created_to
        if query.after is not None:
            where.append(SQL("(created_at, id) < (%(after_at)s, %(after_id)s)"))
            params |= {"after_at": query.after.created_at, "after_id": query.after.id}
        statuses = [status.value for status in query.statuses]
        return self._select(self._per_status(where, statuses, _NEWEST_FIRST), params, statuses)

    def _stuck(self, query: StuckQuery) -> list[Sequence[Any]]:
        where: list[Composable] = [SQL("workspace_id = %(workspace_id)s")]
        where.append(SQL("updated_at < %(idle_since)s"))
        params = {"workspace_id": query.workspace_id, "idle_since": query.idle_since}
        params |= {"limit": query.limit + 1}
        statuses = sorted(status.value for status in OPEN_STATUSES)
        return self._select(self._per_status(where, statuses, _IDLEST_FIRST), params, statuses)

    def _per_status(self, where: list[Composable], statuses: Sequence[str], order: SQL) -> Composed:
        """One ordered, limited scan a status (each an index range), merged: an index serves
        every status alone, none serves `status = ANY(...)` in this order."""
        scan = SQL("SELECT {} FROM {} WHERE {}").format(
            self.columns, self.t, SQL(" AND ").join(where)
        )
        if len(statuses) <= 1:
            status = SQL(" AND status = %(status_0)s" if statuses else "")
            return SQL("{}{} {}").format(scan, status, order)
        return SQL("{} {}").format(
            SQL(" UNION ALL ").join(
                SQL("({} AND status = %({})s {})").format(scan, SQL(f"status_{index}"), order)
                for index in range(len(statuses))
            ),
            order,
        )

    def _select(
        self, statement: Composed, params: dict[str, Any], statuses: Sequence[str]
    ) -> list[Sequence[Any]]:
        params |= {f"status_{index}": status for index, status in enumerate(statuses)}
        with self.datastore.transaction(commit=False) as cursor:
            rows = cursor.connection.cursor(row_factory=tuple_row, binary=True)
            rows.execute(statement, params)  # tuples in binary: a third less time than dicts
            return list(rows.fetchall())

    def _tree(self, query: TreeQuery) -> list[Sequence[Any]]:
        scope = SQL("" if query.workspace_id is None else "AND workspace_id = %(workspace_id)s")
        statement = SQL(
            "WITH RECURSIVE tree(id, workspace_id) AS ("
            "SELECT id, workspace_id FROM {t} WHERE id = %(run_id)s {scope} "
            "UNION SELECT c.id, c.workspace_id FROM {t} AS c JOIN tree "
            "ON c.parent_run_id = tree.id AND c.workspace_id = tree.workspace_id) "
            "SELECT {columns} FROM {t} WHERE id IN (SELECT id FROM tree LIMIT %(limit)s)"
        ).format(t=self.t, scope=scope, columns=self.columns)
        params: dict[str, Any] = {"run_id": query.run_id, "limit": query.max_nodes + 1}
        params["workspace_id"] = query.workspace_id
        return self._select(statement, params, ())

    def _stats(self, query: StatsQuery) -> StatsRows:
        """Counts by status and durations: whole UTC days inside the window from the daily
        rollup, the rest of the window from the rows. Buckets: whole days or hours from the
        daily or hourly rollup (projections/rollup.py), the rest from the rows. All from one
        snapshot."""
        days = _whole(Bucket.DAY, query.start, query.end)
        day_edges = _edges(query.start, query.end, days)
        periods = _whole(query.bucket, query.start, query.end)
        bucket_edges = _edges(query.start, query.end, periods)
        daily = query.bucket is Bucket.DAY
        params: dict[str, Any] = {
            "workspace_id": query.workspace_id,
            "subject_id": query.subject_id,
            "step": query.bucket.step,
            "origin": query.bucket.floor(query.start),
        }
        counts: dict[tuple[str, str], int] = {}
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(_SNAPSHOT)
            rows = partial(self._rows, cursor, query, params)
            created = rows(_CREATED, "created_at", day_edges)
            for subject, status, _, n in created:
                counts[subject, status] = counts.get((subject, status), 0) + n
            bucketed = created if daily else rows(_CREATED, "created_at", bucket_edges)
            per_bucket = [(bucket, n) for _, _, bucket, n in bucketed]
            ended = [tuple(row) for row in rows(_FINISHED, "completed_at", bucket_edges)]
            timed: dict[str, list[int]] = {}
            for subject, duration in rows(_TIMED, "completed_at", day_edges):
                timed.setdefault(subject, []).append(duration)
            parts: dict[str, list[Sequence[int]]] = {
                subject: [sorted(mine)] for subject, mine in timed.items()
            }
            segments = self._per_day(cursor, query, self.durations, ["durations"], days)
            for subject, packed in segments:
                parts.setdefault(subject, []).append(unpack(packed))
            for subject, day, *figures in self._per_day(cursor, query, self.days, _DAILY, days):
                tally = dict(zip(_FIGURES, figures, strict=True))
                for column, status in _CREATED_STATUSES:
                    if n := tally[column]:
                        counts[subject, status] = counts.get((subject, status), 0) + n
                if daily:
                    start = datetime.combine(day, time(), UTC)
                    per_bucket.append((start, sum(tally[column] for column in CREATED_COLUMNS)))
                    ended += _finished(start, tally)
            for start, *figures in [] if daily else self._hours(cursor, query, periods):
                tally = dict(zip(_HOURLY, figures, strict=True))
                per_bucket.append((start, tally["created"]))
                ended += _finished(start, tally)
        # Each subject's sorted parts merged (C's sort merges ascending runs), then all the
        # subjects ranked without merging: a month of a busy workspace, 90,000 durations in
        # up to a few thousand segments, takes 5 ms.
        merged = {subject: sorted(chain.from_iterable(mine)) for subject, mine in parts.items()}
        durations = [DurationRow.of(subject, [mine], (0.95,)) for subject, mine in merged.items()]
        if durations:
            durations.append(DurationRow.of(None, list(merged.values())))
        status_counts = [(subject, status, n) for (subject, status), n in counts.items()]
        return StatsRows(status_counts, durations, per_bucket, ended)

    def _rows(
        self,
        cursor: Any,
        query: StatsQuery,
        params: dict[str, Any],
        select: str,
        column: str,
        windows: Sequence[tuple[datetime, datetime]],
    ) -> list[Sequence[Any]]:
        """A query over the rows of the workspace (and subject) whose `column` falls in one
        of the windows: one index range a window."""
        if not windows:
            return []
        subject = "" if query.subject_id is None else " AND subject_id = %(subject_id)s"
        ranges = []
        for index, (start, end) in enumerate(windows):
            params |= {f"start_{index}": start, f"end_{index}": end}
            ranges.append(
                SQL(
                    "SELECT * FROM {t} WHERE workspace_id = %(workspace_id)s{subject} "
                    "AND {column} >= %({start})s AND {column} < %({end})s"
                ).format(
                    t=self.t,
                    subject=SQL(subject),
                    column=Identifier(column),
                    start=SQL(f"start_{index}"),
                    end=SQL(f"end_{index}"),
                )
            )
        rows = cursor.connection.cursor(row_factory=tuple_row, binary=True)
        rows.execute(SQL(select).format(rows=SQL(" UNION ALL ").join(ranges)), params)
        return list(rows.fetchall())

    def _per_day(
        self,
        cursor: Any,
        query: StatsQuery,
        table: Composed,
        columns: Sequence[str],
        days: tuple[datetime, datetime] | None,
    ) -> list[Sequence[Any]]:
        """A daily rollup's rows of the workspace (and subject) for those whole days:
        subject, then the columns."""
        if days is None:
            return []
        return self._rollup(
            cursor,
            query,
            SQL(
                "SELECT subject_id, {} FROM {} WHERE workspace_id = %s AND day >= %s AND day < %s{}"
            ).format(SQL(", ").join(map(Identifier, columns)), table, _subject(query)),
            (days[0].date(), days[1].date()),
        )

    def _hours(
        self, cursor: Any, query: StatsQuery, hours: tuple[datetime, datetime] | None
    ) -> list[Sequence[Any]]:
        """The hourly rollup of the workspace (and subject) for those whole hours, summed
        over subjects: hour, then _HOURLY."""
        if hours is None:
            return []
        return self._rollup(
            cursor,
            query,
            SQL(
                "SELECT hour, {} FROM {} WHERE workspace_id = %s AND hour >= %s AND hour < %s{} "
                "GROUP BY hour"
            ).format(
                SQL(", ").join(SQL("sum({})::bigint").format(Identifier(c)) for c in _HOURLY),
                self.hours,
                _subject(query),
            ),
            hours,
        )

    def _rollup(
        self, cursor: Any, query: StatsQuery, statement: Composed, bounds: tuple[Any, Any]
    ) -> list[Sequence[Any]]:
        params: list[Any] = [query.workspace_id, *bounds]
        if query.subject_id is not None:
            params.append(query.subject_id)
        rows = cursor.connection.cursor(row_factory=tuple_row, binary=True)
        rows.execute(statement, params)
        return list(rows.fetchall())


def _subject(query: StatsQuery) -> SQL:
    return SQL("" if query.subject_id is None else " AND subject_id = %s")


_FIGURES = (*CREATED_COLUMNS, *FINISHED_COLUMNS)
_DAILY = ("day", *_FIGURES)
_CREATED_STATUSES = [(column, column.removeprefix("created_")) for column in CREATED_COLUMNS]
_HOURLY = HOUR_COLUMNS[3:]
"""The hourly rollup's figures: runs created, then finished by terminal status."""


def _finished(start: datetime, tally: dict[str, Any]) -> list[tuple[datetime, str, int]]:
    return [
        (start, column.removeprefix("finished_"), tally[column])
        for column in FINISHED_COLUMNS
        if tally[column]
    ]


"""The rollup's columns that `stats` reads, after subject and day."""

_CREATED = (
    "SELECT subject_id, status, date_bin(%(step)s, created_at, %(origin)s) AS bucket, "
    "count(*) AS n FROM ({rows}) AS r GROUP BY 1, 2, 3"
)
_FINISHED = (
    "SELECT date_bin(%(step)s, completed_at, %(origin)s) AS bucket, status, count(*) AS n "
    "FROM ({rows}) AS r GROUP BY 1, 2"
)
_TIMED = "SELECT subject_id, duration_ms FROM ({rows}) AS r WHERE duration_ms IS NOT NULL"


def _whole(bucket: Bucket, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The whole UTC days or hours within [start, end), as [first start, last end), if any."""
    first = bucket.floor(start)
    if first < start:
        first += bucket.step
    last = bucket.floor(end)
    return (first, last) if first < last else None


def _edges(
    start: datetime, end: datetime, whole: tuple[datetime, datetime] | None
) -> list[tuple[datetime, datetime]]:
    """What of [start, end) lies outside the whole periods: all of it if there are none."""
    if whole is None:
        return [(start, end)]
    return [(a, b) for a, b in ((start, whole[0]), (whole[1], end)) if a < b]
