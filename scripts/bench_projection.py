"""The projection's catch-up rate, next to plain batched inserts into the same table.

    .venv/bin/python scripts/bench_projection.py [--events 200000] [--backend postgres] [--quick]

For each backend: seeds a throwaway database with N events of realistic runs, times the
projection catching the `workflow_runs` read model up from nothing (500 events a
transaction), then times plain batched inserts of N rows of the same shape into a copy of
that table (psycopg `executemany`, 500 rows a transaction; sqlite3 on SQLite), in the same
run, on the same database. Prints one table.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from benchlib import database, peak_rss_mib, print_table, seed
from infrastructure import readmodel
from infrastructure.application import Ledger
from projections.readmodel import COLUMNS, JSON_COLUMNS, TABLE

BATCH = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--quick", action="store_true", help="a small run that checks it works")
    args = parser.parse_args()
    events = 3_000 if args.quick else args.events
    rows = []
    for backend in args.backend or ["sqlite", "postgres"]:
        with database(backend) as url:
            recorded = seed(url, events)
            projected, seconds = project(url)
            assert projected == recorded, (projected, recorded)
            baseline = plain_inserts(url, backend, recorded)
            rate = projected / seconds
            rows.append(
                [
                    backend,
                    f"{projected:,}",
                    f"{seconds:.2f}",
                    f"{rate:,.0f}",
                    f"{baseline:,.0f}",
                    f"{rate / baseline:.2f}",
                    f"{peak_rss_mib():.0f}",
                ]
            )
    print()
    print_table(
        ["backend", "events", "seconds", "events/s", "baseline rows/s", "ratio", "peak MiB"],
        rows,
    )


def project(url: str) -> tuple[int, float]:
    with Ledger(url) as ledger:
        view = readmodel.open_view(ledger)
        runner = readmodel.projector(ledger, view, batch_size=BATCH)
        started = time.perf_counter()
        applied = runner.run()
        return applied, time.perf_counter() - started


def plain_inserts(url: str, backend: str, count: int) -> float:
    """Rows a second for N plain inserts of the read model's rows, 500 a transaction."""
    now = datetime.now(UTC)
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row |= {"workspace_id": "ws_bench", "subject_id": "wf_bench", "status": "completed"}
    row |= {"mode": "async", "triggered_by": "user", "user_id": "user_1", "version": 3}
    row |= {"input": '{"n":1}', "created_at": now, "updated_at": now, "status_since": now}
    rows = [{**row, "id": f"run_{index:08d}"} for index in range(count)]
    if backend == "sqlite":
        return _sqlite_inserts(url, rows)
    return _postgres_inserts(url, rows)


def _postgres_inserts(url: str, rows: list[dict[str, Any]]) -> float:
    copy = sql.Identifier(TABLE + "_baseline")
    names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    values = sql.SQL(", ").join(
        sql.SQL("{}::jsonb").format(sql.Placeholder(c)) if c in JSON_COLUMNS else sql.Placeholder(c)
        for c in COLUMNS
    )
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(copy, names, values)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(copy, sql.Identifier(TABLE))
        )
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(insert, rows[start : start + BATCH])
        return len(rows) / (time.perf_counter() - started)


def _sqlite_inserts(url: str, rows: list[dict[str, Any]]) -> float:
    path = url.removeprefix("sqlite:///")
    copy = TABLE + "_baseline"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        schema = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = ?", (TABLE,)
        ).fetchone()[0]
        connection.execute(schema.replace(TABLE, copy, 1))
        names, marks = ", ".join(COLUMNS), ", ".join(f":{column}" for column in COLUMNS)
        insert = f"INSERT INTO {copy} ({names}) VALUES ({marks})"
        text_rows = [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()} for r in rows
        ]
        started = time.perf_counter()
        for start in range(0, len(text_rows), BATCH):
            connection.execute("BEGIN")
            connection.executemany(insert, text_rows[start : start + BATCH])
            connection.execute("COMMIT")
        return len(rows) / (time.perf_counter() - started)
    finally:
        connection.close()


if __name__ == "__main__":
    main()
