"""The dashboard queries at a million runs: p50/p95 latency of each, over varied filters.

    .venv/bin/python scripts/bench_queries.py [--runs 1000000] [--backend postgres] [--quick]

Loads N generated runs straight into a throwaway `workflow_runs` read model (PostgreSQL: its
secondary indexes set aside, COPY, the indexes rebuilt, VACUUM ANALYZE, the rollups
recounted; SQLite: batched inserts, ANALYZE), not through the event store. The runs: 20
workspaces of Zipf-like sizes (the largest holds about 28%), 90 days up to now, a dozen
subjects a workspace, most runs finished, some open and idle for days, one in ten a child
of an earlier run.

Then times each query through the real API (projections/queries.py), each variant with
random parameters, and asks PostgreSQL to EXPLAIN every statement a query ran: the verdict
names the indexes used, or says `SEQ SCAN` if any statement scanned the table. Prints one
table: query, variant, samples, rows a call, p50 and p95 in ms, verdict.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from benchlib import database, print_table
from domain import payload, timestamps
from domain.status import OPEN_STATUSES, RunStatus, TriggeredBy
from infrastructure import readmodel
from infrastructure.application import Ledger
from infrastructure.progress import Progress
from projections.postgres import PostgresRunsView
from projections.queries import Position, RunQueries, RunsQuery, StatsQuery, StuckQuery, TreeQuery
from projections.queries_postgres import PostgresRunQueries
from projections.queries_sqlite import SQLiteRunQueries
from projections.readmodel import COLUMNS, TABLE, TIME_COLUMNS

WORKSPACES = [f"ws_{index:02d}" for index in range(20)]
WORKSPACE_WEIGHTS = [1 / (index + 1) for index in range(len(WORKSPACES))]
SUBJECTS = [f"wf_{name}" for name in "abcdefghijkl"]
SUBJECT_WEIGHTS = [1 / (index + 1) ** 0.8 for index in range(len(SUBJECTS))]
TRIGGERS: list[tuple[TriggeredBy, float]] = [
    (TriggeredBy.USER, 40),
    (TriggeredBy.WORKFLOW, 20),
    (TriggeredBy.EVENT, 15),
]
TRIGGERS += [(TriggeredBy.AGENT, 20), (TriggeredBy.SWARM, 5)]
ENDINGS: list[tuple[RunStatus, float]] = [
    (RunStatus.COMPLETED, 80),
    (RunStatus.FAILED, 10),
    (RunStatus.CANCELLED, 5),
]
ENDINGS += [(RunStatus.TIMED_OUT, 3), (RunStatus.RUNNING, 1), (RunStatus.PENDING, 0.5)]
ENDINGS += [(RunStatus.PAUSED, 0.3), (RunStatus.WAITING, 0.2)]
SPAN = timedelta(days=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--samples", type=int, default=200, help="calls a variant")
    parser.add_argument("--quick", action="store_true", help="a small run that checks it works")
    args = parser.parse_args()
    runs, samples = (20_000, 20) if args.quick else (args.runs, args.samples)
    now = timestamps.truncate(datetime.now(UTC))
    with database(args.backend) as url, Ledger(url) as ledger:
        view = readmodel.open_view(ledger)
        started = time.perf_counter()
        fixture = Fixture(now, random.Random(7))
        rows = fixture.rows(runs)
        if args.backend == "postgres":
            load_postgres(url, rows, runs)
            assert isinstance(view, PostgresRunsView)
            rolled = time.perf_counter()
            view.refill_rollup()  # the rows went in behind the projection's back
            print(f"daily and hourly rollups recounted in {time.perf_counter() - rolled:.1f} s")
        else:
            load_sqlite(url, rows, runs)
        print(f"loaded {runs:,} runs in {time.perf_counter() - started:.1f} s\n")
        datastore = ledger.factory.datastore  # type: ignore[attr-defined]
        queries: RunQueries
        if args.backend == "postgres":
            queries = Explaining(datastore, table=view.table, url=url)
        else:
            queries = SQLiteRunQueries(datastore, table=view.table)
        table = [measure(queries, name, call, samples) for name, call in variants(fixture)]
    print(f"\nload average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print_table(["query", "variant", "samples", "rows", "p50 ms", "p95 ms", "EXPLAIN"], table)


# The runs -----------------------------------------------------------------------------------


@dataclass
class Fixture:
    """Generates the runs, and remembers what the variants need to pick from."""

    now: datetime
    rng: random.Random
    parents: list[tuple[str, str]] = field(default_factory=list)
    """(workspace, run id) of runs with children"""
    _recent: dict[str, list[str]] = field(default_factory=dict)

    def rows(self, count: int) -> Iterator[dict[str, Any]]:
        """`count` rows, oldest first."""
        step = SPAN / count
        for index in range(count):
            created = self.now - SPAN + step * index + timedelta(milliseconds=self.rng.random())
            yield self.row(f"run_{index:08d}", timestamps.truncate(created))

    def row(self, run_id: str, created: datetime) -> dict[str, Any]:
        rng = self.rng
        workspace = rng.choices(WORKSPACES, WORKSPACE_WEIGHTS)[0]
        recent = self._recent.setdefault(workspace, [])
        parent = rng.choice(recent) if recent and rng.random() < 0.1 else None
        if parent is not None and len(self.parents) < 10_000:
            self.parents.append((workspace, parent))
        recent.append(run_id)
        del recent[:-50]
        age = self.now - created
        status = _weighted(rng, ENDINGS)
        if age < timedelta(hours=2) and rng.random() < 0.3:
            status = rng.choice(sorted(OPEN_STATUSES))
        started = created + timedelta(milliseconds=int(rng.expovariate(1 / 2000)))
        duration = int(rng.lognormvariate(9, 1.5))
        started_at = None if status is RunStatus.PENDING else started
        ended = started + timedelta(milliseconds=duration)
        completed_at = ended if status.is_terminal else None
        updated = min(ended if status.is_terminal else started + timedelta(seconds=5), self.now)
        updated = max(updated, created)
        row: dict[str, Any] = {
            "id": run_id,
            "workspace_id": workspace,
            "subject_id": rng.choices(SUBJECTS, SUBJECT_WEIGHTS)[0],
            "parent_run_id": parent,
            "status": status.value,
            "mode": "async",
            "input": payload.dumps({"n": rng.randrange(1000)}),
            "output": payload.dumps({"ok": True}) if status is RunStatus.COMPLETED else None,
            "error": "boom" if status is RunStatus.FAILED else None,
            "triggered_by": _weighted(rng, TRIGGERS).value,
            "cf_workflow_id": None,
            "duration_ms": duration if status.is_terminal else None,
            "user_id": "user_1",
            "started_at": started_at,
            "completed_at": completed_at,
            "created_at": created,
            "updated_at": updated if started_at else created,
            "queued_ms": None if started_at is None else (started - created) // _MS,
            "running_ms": None if started_at is None else duration,
            "paused_ms": None if started_at is None else 0,
            "waiting_ms": None if started_at is None else 0,
            "version": 3,
            "status_since": updated if started_at else created,
            "recorded_at": updated if started_at else created,
        }
        if status.is_terminal and started_at is None:
            row["duration_ms"] = None
        if not status.is_terminal and started_at is not None:
            row["running_ms"] = 0
        return row


_MS = timedelta(milliseconds=1)
T = TypeVar("T")


def _weighted(rng: random.Random, choices: Sequence[tuple[T, float]]) -> T:
    return rng.choices([c for c, _ in choices], [w for _, w in choices])[0]


def load_postgres(url: str, rows: Iterator[dict[str, Any]], count: int) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        indexes = [
            row[0]
            for row in connection.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef NOT LIKE %s",
                (TABLE, "%UNIQUE%"),
            )
        ]
        names = connection.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef NOT LIKE %s",
            (TABLE, "%UNIQUE%"),
        ).fetchall()
        for (name,) in names:
            connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        )
        with (
            Progress("loading", count, unit="runs") as progress,
            connection.cursor() as cursor,
            cursor.copy(copy) as writer,
        ):
            for index, row in enumerate(rows, start=1):
                writer.write_row([row[column] for column in COLUMNS])
                if index % 10_000 == 0:
                    progress.advance(10_000)
        started = time.perf_counter()
        for statement in indexes:
            connection.execute(statement.encode())
        connection.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TABLE)))
        print(f"indexes and VACUUM ANALYZE: {time.perf_counter() - started:.1f} s")


def load_sqlite(url: str, rows: Iterator[dict[str, Any]], count: int) -> None:
    import sqlite3  # noqa: PLC0415

    connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    insert = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
    insert += f"({', '.join(':' + column for column in COLUMNS)})"
    batch: list[dict[str, Any]] = []
    with Progress("loading", count, unit="runs") as progress:
        connection.execute("BEGIN")
        for row in rows:
            for column in TIME_COLUMNS:
                if row[column] is not None:
                    row[column] = timestamps.to_iso(row[column])
            batch.append(row)
            if len(batch) == 10_000:
                connection.executemany(insert, batch)
                progress.advance(len(batch))
                batch.clear()
        connection.executemany(insert, batch)
        progress.advance(len(batch))
        connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.close()


# The measures -------------------------------------------------------------------------------


Variant = Callable[[RunQueries], int]
"""One call with random parameters; returns how many runs (or rows) it answered."""


def variants(fixture: Fixture) -> list[tuple[tuple[str, str], Variant]]:
    rng, now = fixture.rng, fixture.now

    def workspace() -> str:
        return rng.choices(WORKSPACES, WORKSPACE_WEIGHTS)[0]

    def big() -> str:
        return rng.choice(WORKSPACES[:3])

    def page(**filters: Any) -> Variant:
        def call(queries: RunQueries) -> int:
            chosen = {k: v() if callable(v) else v for k, v in filters.items()}
            return len(queries.runs(RunsQuery(**chosen)).runs)

        return call

    def deep(queries: RunQueries) -> int:
        """A page far down the list: the cursor is a place, any place will do."""
        cursor = Position(now - timedelta(days=rng.uniform(0, 89)), "run_99999999").encode()
        query = RunsQuery.parse(workspace_id=big(), cursor=cursor)
        return len(queries.runs(query).runs)

    def parent(queries: RunQueries) -> int:
        workspace, run_id = rng.choice(fixture.parents)
        query = RunsQuery(workspace_id=workspace, parent_run_id=run_id)
        return len(queries.runs(query).runs)

    def stats(window: timedelta, bucket: str = "hour", subject: bool = False) -> Variant:
        def call(queries: RunQueries) -> int:
            end = now - timedelta(hours=rng.randrange(0, 24 * 30)) if rng.random() < 0.5 else now
            query = StatsQuery(
                workspace_id=big() if rng.random() < 0.5 else workspace(),
                start=end - window,
                end=end,
                subject_id=rng.choice(SUBJECTS) if subject else None,
                bucket=StatsQuery.parse(workspace_id="w", now=now, bucket=bucket).bucket,
            )
            answer = queries.stats(query)
            return sum(answer.counts_by_status.values())

        return call

    def tree(queries: RunQueries) -> int:
        _, root = rng.choice(fixture.parents)
        node = queries.tree(TreeQuery(root))
        return 1 + len(node.children)

    def stuck(idle: str) -> Variant:
        def call(queries: RunQueries) -> int:
            query = StuckQuery.parse(workspace_id=workspace(), idle_for=idle, now=now)
            return len(queries.stuck(query).runs)

        return call

    def statuses(count: int) -> Callable[[], tuple[RunStatus, ...]]:
        return lambda: tuple(rng.sample(sorted(RunStatus), count))

    def window() -> datetime:
        return now - timedelta(days=rng.uniform(0, 80))

    return [
        (("runs", "first page, any workspace"), page(workspace_id=workspace)),
        (("runs", "first page, biggest workspaces"), page(workspace_id=big)),
        (("runs", "limit 1000"), page(workspace_id=big, limit=1000)),
        (("runs", "a page deep down, by cursor"), deep),
        (("runs", "one status"), page(workspace_id=big, statuses=statuses(1))),
        (("runs", "two or three statuses"), page(workspace_id=big, statuses=statuses(2))),
        (
            ("runs", "a rare status (waiting)"),
            page(workspace_id=big, statuses=(RunStatus.WAITING,)),
        ),
        (("runs", "subject"), page(workspace_id=big, subject_id=lambda: rng.choice(SUBJECTS))),
        (
            ("runs", "subject + status"),
            page(
                workspace_id=big,
                subject_id=lambda: rng.choice(SUBJECTS),
                statuses=(RunStatus.FAILED,),
            ),
        ),
        (
            ("runs", "triggered by swarm"),
            page(workspace_id=big, triggered_by=TriggeredBy.SWARM),
        ),
        (("runs", "children of a parent"), parent),
        (
            ("runs", "created window (1 day)"),
            page(workspace_id=big, created_to=window, created_from=lambda: now - SPAN),
        ),
        (("runs", "no match (unknown subject)"), page(workspace_id=big, subject_id="wf_none")),
        (("stats", "24 h, hourly (default)"), stats(timedelta(hours=24))),
        (("stats", "24 h, one subject"), stats(timedelta(hours=24), subject=True)),
        (("stats", "7 days, daily"), stats(timedelta(days=7), "day")),
        (("stats", "7 days, hourly"), stats(timedelta(days=7), "hour")),
        (("stats", "30 days, daily"), stats(timedelta(days=30), "day")),
        (("stats", "30 days, one subject"), stats(timedelta(days=30), "day", subject=True)),
        (("tree", "a parent's tree"), tree),
        (("stuck", "idle for 1h"), stuck("1h")),
        (("stuck", "idle for 7d"), stuck("7d")),
    ]


def measure(queries: RunQueries, name: tuple[str, str], call: Variant, samples: int) -> list[str]:
    for _ in range(3):  # warm up
        call(queries)
    timings, answered = [], []
    if isinstance(queries, Explaining):
        queries.recording = False
    for _ in range(samples):
        started = time.perf_counter()
        answered.append(call(queries))
        timings.append((time.perf_counter() - started) * 1000)
    verdict = "-"
    if isinstance(queries, Explaining):
        queries.recording = True
        call(queries)
        verdict = queries.verdict()
    timings.sort()
    p95 = timings[max(0, -(-95 * len(timings) // 100) - 1)]
    row = [*name, str(samples), f"{statistics.mean(answered):,.0f}"]
    row += [f"{statistics.median(timings):.1f}", f"{p95:.1f}", verdict]
    print("  ".join(row), flush=True)
    return row


class Explaining(PostgresRunQueries):
    """The real adapter, which can also record the statements it runs to EXPLAIN them."""

    def __init__(self, datastore: Any, *, table: str, url: str) -> None:
        super().__init__(datastore, table=table)
        self.url, self.recording = url, False
        self.statements: list[tuple[Any, Any]] = []
        self.real = datastore
        self.datastore = self  # type: ignore[assignment]

    @contextmanager
    def transaction(self, *, commit: bool = False) -> Iterator[Any]:
        with self.real.transaction(commit=commit) as cursor:
            yield _Recorder(cursor, self) if self.recording else cursor

    def verdict(self) -> str:
        used: set[str] = set()
        seq = False
        with psycopg.connect(self.url) as connection:
            for statement, params in self.statements:
                explained = connection.execute(
                    sql.SQL("EXPLAIN (FORMAT JSON) {}").format(statement), params
                ).fetchone()
                plan = explained[0] if explained else [{"Plan": {}}]
                for node in _nodes(plan[0]["Plan"]):
                    if node.get("Relation Name") == TABLE and node["Node Type"] == "Seq Scan":
                        seq = True
                    if "Index Name" in node:
                        used.add(node["Index Name"].removeprefix(TABLE + "_").rsplit("_", 1)[0])
        self.statements = []
        return ("SEQ SCAN; " if seq else "") + ("index: " + ", ".join(sorted(used)))


@dataclass
class _Recorder:
    cursor: Any
    owner: Explaining

    def execute(self, statement: Any, params: Any = None) -> Any:
        if params is not None:
            self.owner.statements.append((statement, params))
        return self.cursor.execute(statement, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.cursor)

    @property
    def connection(self) -> Any:
        return _Connection(self.cursor.connection, self.owner)


@dataclass
class _Connection:
    """The cursor's connection, whose own cursors (binary, tuples) record too."""

    connection: Any
    owner: Explaining

    def cursor(self, **options: Any) -> _Recorder:
        return _Recorder(self.connection.cursor(**options), self.owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


if __name__ == "__main__":
    main()
