"""The dashboard queries on SQLite. Times are toISOString() text, which sorts as time, so
windows and cursors compare text; an hour or a day is a prefix of that text.

Every value is a parameter; the SQL text is built from fixed fragments and the table's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import Any

from eventsourcing.sqlite import SQLiteDatastore

from domain import timestamps
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
from projections.readmodel import TIME_COLUMNS, VIEW_COLUMNS

_VIEW_TIMES = [index for index, column in enumerate(VIEW_COLUMNS) if column in TIME_COLUMNS]
_PREFIX = {Bucket.HOUR: len("2026-11-24T05"), Bucket.DAY: len("2026-11-24")}
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC LIMIT :limit"
_IDLEST_FIRST = "ORDER BY updated_at, id LIMIT :limit"


class SQLiteRunQueries(RunQueries):
    def __init__(self, datastore: SQLiteDatastore, *, table: str) -> None:
        self.datastore, self.table = datastore, table
        self.columns = ", ".join(VIEW_COLUMNS)

    def _runs(self, query: RunsQuery) -> list[Sequence[Any]]:
        where = ["workspace_id = :workspace_id"]
        params: dict[str, Any] = {"workspace_id": query.workspace_id, "limit": query.limit + 1}
        for column, value in (
            ("triggered_by", query.triggered_by),
            ("subject_id", query.subject_id),
            ("parent_run_id", query.parent_run_id),
        ):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        if query.created_from is not None:
            where.append("created_at >= :created_from")
            params["created_from"] = timestamps.to_iso(query.created_from)
        if query.created_to is not None:
            where.append("created_at < :created_to")
            params["created_to"] = timestamps.to_iso(query.created_to)
        if query.after is not None:
            where.append("(created_at, id) < (:after_at, :after_id)")
            params |= {"after_at": timestamps.to_iso(query.after.created_at)}
            params |= {"after_id": query.after.id}
        statuses = [status.value for status in query.statuses]
        return self._select(self._per_status(where, statuses, _NEWEST_FIRST), params, statuses)

    def _stuck(self, query: StuckQuery) -> list[Sequence[Any]]:
        where = ["workspace_id = :workspace_id", "updated_at < :idle_since"]
        params = {
            "workspace_id": query.workspace_id,
            "idle_since": timestamps.to_iso(query.idle_since),
            "limit": query.limit + 1,
        }
        statuses = sorted(status.value for status in OPEN_STATUSES)
        return self._select(self._per_status(where, statuses, _IDLEST_FIRST), params, statuses)

    def _per_status(self, where: list[str], statuses: Sequence[str], order: str) -> str:
        """One ordered, limited scan a status (each an index range), merged: an index serves
        every status alone, none serves `status IN (...)` in this order."""
        if len(statuses) <= 1:
            status = " AND status = :status_0" if statuses else ""
            return (
                f"SELECT {self.columns} FROM {self.table} WHERE {' AND '.join(where)}{status} "
                + order
            )
        scans = [
            f"SELECT * FROM (SELECT {self.columns} FROM {self.table} "
            f"WHERE {' AND '.join(where)} "
            f"AND status = :status_{index} {order})"
            for index in range(len(statuses))
        ]
        return " UNION ALL ".join(scans) + f" {order}"

    def _select(
        self, statement: str, params: dict[str, Any], statuses: Sequence[str]
    ) -> list[Sequence[Any]]:
        params |= {f"status_{index}": status for index, status in enumerate(statuses)}
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params)
            return [_decode(row) for row in cursor.fetchall()]

    def _tree(self, query: TreeQuery) -> list[Sequence[Any]]:
        scope = "" if query.workspace_id is None else "AND workspace_id = :workspace_id"
        statement = (
            "WITH RECURSIVE tree(id, workspace_id) AS ("
            f"SELECT id, workspace_id FROM {self.table} WHERE id = :run_id {scope} "
            f"UNION SELECT c.id, c.workspace_id FROM {self.table} AS c JOIN tree "
            "ON c.parent_run_id = tree.id AND c.workspace_id = tree.workspace_id) "
            f"SELECT {self.columns} FROM {self.table} "
            "WHERE id IN (SELECT id FROM tree LIMIT :limit)"
        )
        params: dict[str, Any] = {"run_id": query.run_id, "limit": query.max_nodes + 1}
        params["workspace_id"] = query.workspace_id
        return self._select(statement, params, ())

    def _stats(self, query: StatsQuery) -> StatsRows:
        params: dict[str, Any] = {
            "workspace_id": query.workspace_id,
            "start": timestamps.to_iso(query.start),
            "end": timestamps.to_iso(query.end),
            "prefix": _PREFIX[query.bucket],
            "subject_id": query.subject_id,
        }
        subject = "" if query.subject_id is None else "AND subject_id = :subject_id"
        created = f"FROM {self.table} WHERE workspace_id = :workspace_id "
        created += f"AND created_at >= :start AND created_at < :end {subject}"
        finished = f"FROM {self.table} WHERE workspace_id = :workspace_id "
        finished += f"AND completed_at >= :start AND completed_at < :end {subject}"
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT subject_id, status, count(*) {created} GROUP BY 1, 2", params)
            counts = [(row[0], row[1], row[2]) for row in cursor.fetchall()]
            cursor.execute(
                f"SELECT substr(created_at, 1, :prefix), count(*) {created} GROUP BY 1", params
            )
            per_bucket = [(_bucket_start(row[0]), row[1]) for row in cursor.fetchall()]
            cursor.execute(
                f"SELECT substr(completed_at, 1, :prefix), status, count(*) {finished} "
                "GROUP BY 1, 2",
                params,
            )
            ended = [(_bucket_start(row[0]), row[1], row[2]) for row in cursor.fetchall()]
            cursor.execute(
                f"SELECT subject_id, duration_ms {finished} AND duration_ms IS NOT NULL "
                "ORDER BY subject_id, duration_ms",
                params,
            )
            durations = [(row[0], row[1]) for row in cursor.fetchall()]
        return StatsRows(counts, _durations(durations), per_bucket, ended)


def _durations(rows: list[tuple[str, int]]) -> list[DurationRow]:
    """Every subject's and all of them, from (subject, duration) in that order."""
    if not rows:
        return []
    parts = [
        (subject, [duration for _, duration in group])
        for subject, group in groupby(rows, key=lambda row: row[0])
    ]
    found = [DurationRow.of(subject, [part]) for subject, part in parts]
    return [*found, DurationRow.of(None, [part for _, part in parts])]


def _bucket_start(prefix: str) -> datetime:
    """The moment an hour (`2026-11-24T05`) or a day (`2026-11-24`) of UTC begins."""
    return datetime.fromisoformat(prefix + ("T00" if len(prefix) == 10 else "") + ":00+00:00")


def _decode(row: Sequence[Any]) -> list[Any]:
    decoded = list(row)
    for index in _VIEW_TIMES:
        if decoded[index] is not None:
            decoded[index] = datetime.fromisoformat(decoded[index])
    return decoded
