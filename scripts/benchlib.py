"""What the benchmark scripts share: throwaway databases, fast seeding, a printed table."""

from __future__ import annotations

import os
import re
import resource
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain import commands
from domain.commands import CreateRun, RunCommand
from domain.run import Run
from infrastructure.application import Ledger
from infrastructure.postgres import throwaway_database
from infrastructure.progress import Progress
from workload import Day

POSTGRES_URL = os.environ.get(
    "RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A URL to an empty database of its own, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    with throwaway_database(POSTGRES_URL, "runledger_bench") as url:
        yield url


def seed(url: str, events: int) -> int:
    """Records about `events` events of realistic runs, many runs a transaction, through the
    real aggregate (so every event is valid); returns how many were recorded."""
    start = datetime.now(UTC) - timedelta(days=2)
    runs_per_workspace = max(1, events // 13)
    day = Day(start=start, runs_per_workspace=runs_per_workspace)
    recorded = 0
    with Ledger(url) as ledger, Progress("seeding", events) as progress:
        runs: dict[str, Run] = {}
        now = ledger.now()
        for data in day.commands():
            command = commands.parse(data)
            if isinstance(command, CreateRun):
                assert command.run_id is not None
                assert command.at is not None
                if command.run_id in runs:
                    continue
                runs[command.run_id] = Run.create(command.run_id, command, command.at, now)
            elif isinstance(command, RunCommand) and command.run_id in runs:
                if not runs[command.run_id].execute(command, now):
                    continue
            else:
                continue
            recorded += 1
            if recorded % 5000 == 0:
                ledger.save(*runs.values())
                progress.advance(5000)
            if recorded >= events:
                break
        ledger.save(*runs.values())
        progress.advance(recorded % 5000)
    return recorded


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_FIGURE = re.compile(r"[-+]?[\d,]*\.?\d+( ?[a-zA-Z%/]+)?")


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns aligned: figures to the right, words to the left."""
    columns = list(zip(header, *rows, strict=True))
    widths = [max(len(str(cell)) for cell in column) for column in columns]
    words = [not all(_FIGURE.fullmatch(str(c)) for c in column[1:]) for column in columns]
    for line in (header, *rows):
        cells = zip(line, widths, words, strict=True)
        print("  ".join(str(c).ljust(w) if text else str(c).rjust(w) for c, w, text in cells))
