"""Dashboard queries over the `workflow_runs` read model: the port and its answers.

One API for the command line, the tests and the HTTP service. Every query is scoped to one
workspace; its parameters (projections/query_params.py, re-exported here) are checked as they
are built. Each backend's adapter (projections/queries_sqlite.py, queries_postgres.py) runs
the SQL; this module turns what the SQL returns into the same answer on every backend.

Definitions shared by both backends:
- runs are listed newest `createdAt` first, ties by id (descending); a cursor is the place
  of the last run printed, so walking the pages never shows a run twice nor skips one that
  existed when the walk began, whatever is added meanwhile;
- a percentile p of n values is the smallest value v with at least p of the values <= v:
  the value of rank ceil(p * n) in ascending order (PostgreSQL's `percentile_disc`);
- `mean` is rounded half up to a whole millisecond.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from domain.errors import RunNotFound
from domain.status import TERMINAL_STATUSES, RunStatus
from projections.query_params import (
    MAX_LIMIT,
    PERCENTILES,
    Bucket,
    Position,
    RunsQuery,
    StatsQuery,
    StuckQuery,
    TooManyNodes,
    TreeQuery,
)
from projections.readmodel import view_from_row
from projections.view import Instant, WorkflowRun

__all__ = [
    "MAX_LIMIT",
    "PERCENTILES",
    "Bucket",
    "DurationRow",
    "Position",
    "RunNode",
    "RunQueries",
    "RunsPage",
    "RunsQuery",
    "Stats",
    "StatsQuery",
    "StatsRows",
    "StuckQuery",
    "StuckRuns",
    "TreeQuery",
]


# Answers ------------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """camelCase keys; timestamps printed as toISOString()."""
        return self.model_dump(by_alias=True)


class RunsPage(_Answer):
    runs: list[WorkflowRun]
    next_cursor: str | None


class DurationStats(_Answer):
    count: int
    p50: int | None
    p95: int | None
    p99: int | None
    max: int | None
    mean: int | None


class SubjectStats(_Answer):
    subject_id: str
    runs: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int
    p95_duration_ms: int | None


class BucketCounts(_Answer):
    start: Instant
    created: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int


class Stats(_Answer):
    workspace_id: str
    from_: Instant
    to: Instant
    bucket: Bucket
    counts_by_status: dict[str, int]
    duration_ms: DurationStats
    by_subject: list[SubjectStats]
    buckets: list[BucketCounts]

    def to_json_dict(self) -> dict[str, Any]:
        data = super().to_json_dict()
        return {"workspaceId": data.pop("workspaceId"), "from": data.pop("from_"), **data}


class RunNode(_Answer):
    run: WorkflowRun
    children: list[RunNode]


class StuckRuns(_Answer):
    idle_since: Instant
    runs: list[WorkflowRun]
    more: bool


# What an adapter returns --------------------------------------------------------------------


@dataclass(frozen=True)
class DurationRow:
    """Durations of one subject (or of all, `subject_id` None): count, sum, max, percentiles."""

    subject_id: str | None
    count: int
    total: int
    max: int
    percentiles: dict[float, int]
    """The value at each fraction asked for (all of PERCENTILES unless fewer were asked)."""

    @classmethod
    def of(
        cls,
        subject_id: str | None,
        parts: Sequence[Sequence[int]],
        fractions: Sequence[float] = PERCENTILES,
    ) -> DurationRow:
        """From every duration, given as parts each in ascending order (at least one value
        in all), without merging the parts."""
        parts = [part for part in parts if part]
        n = sum(map(len, parts))
        values = {p: _ranked(parts, max(1, math.ceil(p * n))) for p in fractions}
        return cls(subject_id, n, sum(map(sum, parts)), max(part[-1] for part in parts), values)


def _ranked(parts: Sequence[Sequence[int]], rank: int) -> int:
    """The value of that rank (from 1) among the values of ascending parts: the smallest v
    with at least `rank` values <= v, found by bisecting the values, not by merging."""
    if len(parts) == 1:
        return parts[0][rank - 1]
    # Bounds: each part's own value at the same fraction, one place either side.
    fraction = rank / sum(map(len, parts))
    high = max(part[min(len(part), math.ceil(fraction * len(part))) - 1] for part in parts)
    low = min(part[max(0, math.floor(fraction * len(part)) - 1)] for part in parts)
    while low < high:
        middle = (low + high) // 2
        if sum(map(bisect_right, parts, repeat(middle))) >= rank:
            high = middle
        else:
            low = middle + 1
    return low


@dataclass(frozen=True)
class StatsRows:
    status_counts: list[tuple[str, str, int]]
    """(subject, status, runs created in the window now in that status)"""
    durations: list[DurationRow]
    """All durations in the window (subject None) and each subject's; none if there are none."""
    created: list[tuple[datetime, int]]
    """(bucket start, runs created)"""
    finished: list[tuple[datetime, str, int]]
    """(bucket start, terminal status, runs finished)"""


# The port -----------------------------------------------------------------------------------


class RunQueries(ABC):
    """The dashboard's questions, answered from the read model."""

    def runs(self, query: RunsQuery) -> RunsPage:
        """A page of runs, newest first; `nextCursor` is null on the last page."""
        rows = self._runs(query)
        runs = [view_from_row(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        cursor = Position(runs[-1].created_at, runs[-1].id).encode() if more else None
        return RunsPage(runs=runs, next_cursor=cursor)

    def stats(self, query: StatsQuery) -> Stats:
        rows = self._stats(query)
        counts = dict.fromkeys((s.value for s in RunStatus), 0)
        subjects: dict[str, dict[str, int]] = {}
        for subject, status, n in rows.status_counts:
            counts[status] += n
            tally = subjects.setdefault(subject, dict.fromkeys(counts, 0))
            tally[status] += n
        p95 = {d.subject_id: d.percentiles[0.95] for d in rows.durations}
        for row in rows.durations:  # subjects with runs finished, but none created, in the window
            if row.subject_id is not None:
                subjects.setdefault(row.subject_id, dict.fromkeys(counts, 0))
        overall = next((d for d in rows.durations if d.subject_id is None), None)
        by_subject = [
            SubjectStats(
                subject_id=subject,
                runs=sum(tally.values()),
                p95_duration_ms=p95.get(subject),
                **_terminal(tally),
            )
            for subject, tally in subjects.items()
        ]
        by_subject.sort(key=lambda s: (-s.runs, s.subject_id))
        return Stats(
            workspace_id=query.workspace_id,
            from_=query.start,
            to=query.end,
            bucket=query.bucket,
            counts_by_status=counts,
            duration_ms=_durations(overall),
            by_subject=by_subject,
            buckets=_buckets(query, rows.created, rows.finished),
        )

    def tree(self, query: TreeQuery) -> RunNode:
        """The run and its descendants through `parentRunId`, children oldest first."""
        rows = self._tree(query)
        if len(rows) > query.max_nodes:
            raise TooManyNodes(query, f"more than {query.max_nodes:,} runs")
        runs = [view_from_row(row) for row in rows]
        root = next((run for run in runs if run.id == query.run_id), None)
        if root is None:
            where = "" if query.workspace_id is None else f" in workspace {query.workspace_id!r}"
            raise RunNotFound(query.run_id, f"{where} in the read model")
        children: dict[str | None, list[WorkflowRun]] = {}
        for run in sorted(runs, key=lambda run: (run.created_at, run.id)):
            children.setdefault(run.parent_run_id, []).append(run)
        level, depth = [root], 0
        while level := [child for run in level for child in children.get(run.id, [])]:
            depth += 1
            if depth > query.max_depth:
                raise TooManyNodes(query, f"more than {query.max_depth} generations")
        return _node(root, children)

    def stuck(self, query: StuckQuery) -> StuckRuns:
        """Open runs whose last event (`updatedAt`) is older than `idle_for`, the idlest first."""
        rows = self._stuck(query)
        runs = [view_from_row(row) for row in rows[: query.limit]]
        return StuckRuns(idle_since=query.idle_since, runs=runs, more=len(rows) > query.limit)

    @abstractmethod
    def _runs(self, query: RunsQuery) -> list[Sequence[Any]]:
        """Up to `limit + 1` rows (their VIEW_COLUMNS, in order) after the cursor, newest
        first (ties by id, descending)."""

    @abstractmethod
    def _stats(self, query: StatsQuery) -> StatsRows: ...

    @abstractmethod
    def _tree(self, query: TreeQuery) -> list[Sequence[Any]]:
        """The root's row and its descendants' in its workspace, up to `max_nodes + 1` rows;
        none if the root is not in the read model (or not in the workspace asked for)."""

    @abstractmethod
    def _stuck(self, query: StuckQuery) -> list[Sequence[Any]]:
        """Up to `limit + 1` rows of open runs updated before `idle_since`, oldest
        `updated_at` first (ties by id)."""


def _node(run: WorkflowRun, children: Mapping[str | None, list[WorkflowRun]]) -> RunNode:
    # Depth is bounded by the query's max_depth, so recursion stays shallow.
    return RunNode(run=run, children=[_node(child, children) for child in children.get(run.id, [])])


_TERMINAL_FIELDS = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
    RunStatus.TIMED_OUT: "timed_out",
}
assert set(_TERMINAL_FIELDS) == TERMINAL_STATUSES


def _terminal(counts: Mapping[str, int]) -> dict[str, int]:
    return {field: counts.get(status.value, 0) for status, field in _TERMINAL_FIELDS.items()}


def _durations(row: DurationRow | None) -> DurationStats:
    if row is None:
        return DurationStats(count=0, p50=None, p95=None, p99=None, max=None, mean=None)
    p50, p95, p99 = (row.percentiles[p] for p in PERCENTILES)
    mean = (2 * row.total + row.count) // (2 * row.count)  # half up, exactly
    return DurationStats(count=row.count, p50=p50, p95=p95, p99=p99, max=row.max, mean=mean)


def _buckets(
    query: StatsQuery,
    created: Iterable[tuple[datetime, int]],
    finished: Iterable[tuple[datetime, str, int]],
) -> list[BucketCounts]:
    counts = {
        start: dict.fromkeys(("created", *_TERMINAL_FIELDS.values()), 0)
        for start in query.bucket_starts()
    }
    for start, n in created:
        counts[start]["created"] += n
    for start, status, n in finished:
        counts[start][_TERMINAL_FIELDS[RunStatus(status)]] += n
    return [BucketCounts(start=start, **tally) for start, tally in counts.items()]
