"""The benchmarks' `--quick` mode, run as processes: each must run end to end on SQLite and
a real PostgreSQL and print its whole table (their figures are read by people, not by
tests: no timing is asserted here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 300


def quick(postgres_server_url: str, *command: str) -> list[list[str]]:
    """Runs a benchmark; returns the rows of the table it prints last, cells split."""
    env = os.environ | {"RUNLEDGER_TEST_POSTGRES_URL": postgres_server_url}
    done = subprocess.run(
        command,
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stdout.rstrip("\n").split("\n")
    blank = max((index for index, line in enumerate(lines) if not line.strip()), default=-1)
    return [line.split() for line in lines[blank + 1 :]]


def test_the_write_benchmark_prints_each_workload_on_both_backends(
    postgres_server_url: str,
) -> None:
    header, *rows = quick(postgres_server_url, "scripts/bench", "--quick")

    assert header == [
        "workload", "backend", "ledger/s", "baseline/s", "ratio", "target", "peak", "MiB"
    ]  # fmt: skip
    assert [(row[0], row[-7]) for row in rows] == [
        (workload, backend)
        for backend in ("sqlite", "postgres")
        for workload in ("1", "2", "3", "4")
    ]
    assert all(float(row[-4]) > 0 and float(row[-1]) > 0 for row in rows)
    assert [row[-3] for row in rows] == ["0.6", "1.0", "0.5", "0.5"] * 2
    assert {row[-2] for row in rows} == {"(quick)"}  # a quick run's figures prove nothing


def test_the_query_benchmark_times_every_query_through_an_index(
    postgres_server_url: str,
) -> None:
    script = str(Path("scripts") / "bench_queries.py")
    header, *rows = quick(postgres_server_url, sys.executable, script, "--quick")

    assert header[:2] == ["query", "variant"]
    assert {row[0] for row in rows} == {"runs", "stats", "tree", "stuck"}
    assert all("index:" in row and "SEQ" not in row for row in rows)


def test_the_projection_benchmark_runs_on_both_backends(postgres_server_url: str) -> None:
    script = str(Path("scripts") / "bench_projection.py")
    header, *rows = quick(postgres_server_url, sys.executable, script, "--quick")

    assert header[0] == "backend"
    assert [row[0] for row in rows] == ["sqlite", "postgres"]


def test_the_apply_benchmark_measures_memory_in_process_and_with_workers(
    postgres_server_url: str,
) -> None:
    script = str(Path("scripts") / "bench_apply.py")
    header, *rows = quick(postgres_server_url, sys.executable, script, "--quick")

    assert header == [
        "backend", "lines", "workers", "seconds", "lines/s", "dealer", "MiB", "worker", "MiB"
    ]  # fmt: skip
    assert [(row[0], row[2]) for row in rows] == [
        (backend, workers)
        for backend in ("sqlite", "postgres")
        for workers in ("1", "2")
        for _ in range(2)
    ]
    assert all(int(row[5]) > 0 for row in rows)
    assert [row[6] == "-" for row in rows] == [True, True, False, False] * 2
