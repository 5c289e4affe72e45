"""The write path against raw psycopg (and sqlite3): four workloads, each next to a baseline
measured in the same run on the same database.

    .venv/bin/python scripts/bench_writes.py [--backend sqlite|postgres]... [--quick]

1. one writer, one command per call (create/start/complete cycles), against one row inserted
   per transaction into an equivalent table;
2. 8 concurrent writers (threads sharing one ledger), one command per call each, against 8
   connections doing the same;
3. `runledger apply` of 200,000 commands (the command as a process), against `executemany` of
   as many rows in 100-row transactions;
4. reading views (`show`) of random runs, against a raw primary-key select.
Seeded; warm-up first; the median of five repetitions, taken in turns with the baseline's.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchlib import database, peak_rss_mib, print_table
from domain import payload
from infrastructure import readmodel
from infrastructure.application import Ledger

WRITERS = 8

TARGETS = {"1": 0.6, "2": 1.0, "3": 0.5, "4": 0.5}
"""The ratio each workload is to reach (issue 6)."""


def cycle(run_id: str) -> list[dict[str, Any]]:
    """A run's create/start/complete cycle, as `apply` commands."""
    return [
        {
            "command": "create",
            "runId": run_id,
            "workspaceId": "ws_bench",
            "subjectId": "wf_bench",
            "userId": "user_1",
            "input": {"n": 1},
        },
        {"command": "start", "runId": run_id},
        {"command": "complete", "runId": run_id, "output": {"ok": True}},
    ]


class Baseline:
    """Raw inserts of one small row into a table shaped like the event store's."""

    def __init__(self, url: str, backend: str) -> None:
        self.url, self.backend = url, backend
        self.row = ("run_x", 1, "domain.events:RunStarted", b'{"at":"2026-11-24T05:05:34Z"}')
        statement = (
            "CREATE TABLE IF NOT EXISTS baseline (originator_id text, originator_version "
            "bigint, topic text, state bytea, PRIMARY KEY (originator_id, originator_version))"
        )
        with self.connect() as connection:
            connection.execute(statement)

    def connect(self) -> Any:
        if self.backend == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            return sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        return psycopg.connect(self.url, autocommit=True)

    def insert_one_per_transaction(self, prefix: str, count: int) -> None:
        mark = "?" if self.backend == "sqlite" else "%s"
        insert = f"INSERT INTO baseline VALUES ({mark}, {mark}, {mark}, {mark})"
        connection = self.connect()
        try:
            for index in range(count):
                connection.execute(insert, (f"{prefix}_{index}", *self.row[1:]))
        finally:
            connection.close()

    def insert_batches(self, prefix: str, count: int, size: int = 100) -> None:
        mark = "?" if self.backend == "sqlite" else "%s"
        insert = f"INSERT INTO baseline VALUES ({mark}, {mark}, {mark}, {mark})"
        rows = [(f"{prefix}_{index}", *self.row[1:]) for index in range(count)]
        connection = self.connect()
        try:
            for start in range(0, count, size):
                if self.backend == "sqlite":
                    connection.execute("BEGIN")
                    connection.executemany(insert, rows[start : start + size])
                    connection.execute("COMMIT")
                else:
                    with connection.transaction(), connection.cursor() as cursor:
                        cursor.executemany(insert, rows[start : start + size])
        finally:
            connection.close()

    def select_by_key(self, ids: list[str]) -> None:
        select = "SELECT * FROM workflow_runs WHERE id = " + (
            "?" if self.backend == "sqlite" else "%s"
        )
        connection = self.connect()
        try:
            for run_id in ids:
                connection.execute(select, (run_id,)).fetchone()
        finally:
            connection.close()


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def median_rates(
    count: int, mine: Callable[[int], object], theirs: Callable[[int], object], repeats: int
) -> tuple[float, float]:
    """Operations a second of the ledger and of its baseline: the median of each over
    repetitions (each given its repetition number), taken in turns, so that a machine that
    speeds up or slows down during the run weighs on both alike."""
    rates: tuple[list[float], list[float]] = ([], [])
    for r in range(repeats):
        for work, measured in zip((mine, theirs), rates, strict=True):
            measured.append(count / timed(functools.partial(work, r)))
    return statistics.median(rates[0]), statistics.median(rates[1])


def in_threads(work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=work, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--quick", action="store_true", help="a small run that checks it works")
    args = parser.parse_args()
    scale = 0.02 if args.quick else 1.0
    repeats = 1 if args.quick else 5
    rows: list[list[str]] = []
    for backend in args.backend or ["sqlite", "postgres"]:
        with database(backend) as url:
            rows += run_workloads(url, backend, scale, repeats)
    print()
    header = ["workload", "backend", "ledger/s", "baseline/s", "ratio", "target", "", "peak MiB"]
    print_table(header, rows)


def run_workloads(url: str, backend: str, scale: float, repeats: int) -> list[list[str]]:
    baseline = Baseline(url, backend)
    results: list[list[str]] = []

    def row(name: str, ledger_rate: float, base_rate: float, peak: float) -> None:
        ratio = ledger_rate / base_rate
        target = TARGETS[name[0]]
        results.append(
            [
                name,
                backend,
                f"{ledger_rate:,.0f}",
                f"{base_rate:,.0f}",
                f"{ratio:.2f}",
                f"{target:.1f}",
                ("met" if ratio >= target else "not met") if scale == 1 else "(quick)",
                f"{peak:.0f}",
            ]
        )
        print(
            f"  {name:<28} {backend:<8} {ledger_rate:>10,.0f}/s  baseline {base_rate:>10,.0f}/s",
            file=sys.stderr,
        )

    cycles = max(10, int(1000 * scale))
    with Ledger(url) as ledger:
        # 1. one writer
        def one_writer(r: int) -> None:
            for index in range(cycles):
                for command in cycle(f"run_w1_{r}_{index}"):
                    ledger.submit(command)

        one_writer(-1)  # warm-up
        mine, theirs = median_rates(
            3 * cycles,
            one_writer,
            lambda r: baseline.insert_one_per_transaction(f"w1_{r}", 3 * cycles),
            repeats,
        )
        row("1 one writer", mine, theirs, peak_rss_mib())

        # 2. eight writers sharing one ledger
        def eight_writers(r: int) -> None:
            def writer(w: int) -> None:
                for index in range(cycles):
                    for command in cycle(f"run_w2_{r}_{w}_{index}"):
                        ledger.submit(command)

            in_threads(writer)

        mine, theirs = median_rates(
            WRITERS * 3 * cycles,
            eight_writers,
            lambda r: in_threads(
                lambda w: baseline.insert_one_per_transaction(f"w2_{r}_{w}", 3 * cycles)
            ),
            repeats,
        )
        row("2 eight writers", mine, theirs, peak_rss_mib())

    # 3. runledger apply, as a process: each repetition applies a file of runs of its own
    commands = max(300, int(200_000 * scale))
    total = 3 * (commands // 3)
    runledger = str(Path(sys.executable).parent / "runledger")
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(folder) / f"commands_{r}.jsonl" for r in range(repeats)]
        for r, path in enumerate(files):
            with path.open("w") as file:
                for index in range(commands // 3):
                    for command in cycle(f"run_w3_{r}_{index}"):
                        file.write(payload.dumps(command) + "\n")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        mine, theirs = median_rates(
            total,
            lambda r: subprocess.run(
                [runledger, "--db", url, "apply", str(files[r])],
                check=True,
                stdout=subprocess.DEVNULL,
            ),
            lambda r: baseline.insert_batches(f"w3_{r}", total),
            repeats,
        )
        child_peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        row(
            "3 apply 200k" if scale == 1 else f"3 apply {total:,}",
            mine,
            theirs,
            child_peak,
        )

    # 4. reading views
    with Ledger(url) as ledger:
        readmodel.projector(ledger, readmodel.open_view(ledger)).run()
        ids = [f"run_w3_0_{index}" for index in range(commands // 3)]
        picks = random.Random(4).choices(ids, k=max(100, int(5000 * scale)))

        def show(r: int) -> None:
            for run_id in picks:
                ledger.view_json(run_id)

        show(-1)
        baseline.select_by_key(picks)
        mine, theirs = median_rates(
            len(picks), show, lambda r: baseline.select_by_key(picks), repeats
        )
        row("4 show", mine, theirs, peak_rss_mib())
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
