"""Test data: commands and moments built from defaults, so tests state only what matters."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg

from domain import payload, timestamps
from domain.commands import CreateRun, RunCommand, parse
from domain.events import RunEvent
from domain.run import Run
from domain.status import RunStatus
from infrastructure import readmodel
from infrastructure.application import Ledger
from projections.fold import fold
from projections.postgres import PostgresRunsView
from projections.readmodel import COLUMNS, JSON_COLUMNS, RunsView, to_row

# shared/seed/WorkflowRun.md, the interface's fields in order.
SEED_FIELDS = [
    "id",
    "workspaceId",
    "subjectId",
    "parentRunId",
    "status",
    "mode",
    "input",
    "output",
    "error",
    "triggeredBy",
    "cfWorkflowId",
    "durationMs",
    "userId",
    "startedAt",
    "completedAt",
    "createdAt",
    "updatedAt",
]

T0 = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
"""The moment test histories start at; the fake clock starts one day later."""


def at(seconds: float) -> str:
    """The ISO text of T0 plus some seconds."""
    return timestamps.to_iso(T0 + timedelta(seconds=seconds))


@dataclass
class FakeClock:
    """The ledger's clock, under the test's control."""

    now: datetime = field(default_factory=lambda: T0 + timedelta(days=1))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def create(run_id: str | None = "run_1", **fields: Any) -> dict[str, Any]:
    """A valid `create` command as `apply` reads it; `fields` override or add (None drops)."""
    command: dict[str, Any] = {
        "command": "create",
        "runId": run_id,
        "workspaceId": "ws_1",
        "subjectId": "wf_checkout",
        "userId": "user_1",
    }
    command |= fields
    return {key: value for key, value in command.items() if value is not None}


def command(name: str, run_id: str = "run_1", **fields: Any) -> dict[str, Any]:
    """A transition command (`start`, `complete`, `timeOut`, ...) as `apply` reads it."""
    if name == "fail":
        fields.setdefault("error", "boom")
    if name == "linkCfWorkflow":
        fields.setdefault("cfWorkflowId", "cf_1")
    return {"command": name, "runId": run_id, **fields}


# The aggregate without a database -------------------------------------------------------------

ROUTES: dict[RunStatus, tuple[str, ...]] = {
    RunStatus.PENDING: (),
    RunStatus.RUNNING: ("start",),
    RunStatus.PAUSED: ("start", "pause"),
    RunStatus.WAITING: ("start", "wait"),
    RunStatus.COMPLETED: ("start", "complete"),
    RunStatus.FAILED: ("fail",),
    RunStatus.CANCELLED: ("cancel",),
    RunStatus.TIMED_OUT: ("timeOut",),
}
"""The transitions that bring a new run to each status."""


def create_command(run_id: str | None = "run_1", **fields: Any) -> CreateRun:
    """`create(...)` parsed into the model the aggregate takes."""
    return parsed_create(create(run_id, **fields))


def run_command(name: str, run_id: str = "run_1", **fields: Any) -> RunCommand:
    """`command(...)` parsed into the model the aggregate takes."""
    return parsed_transition(command(name, run_id, **fields))


def run_from(first: CreateRun, *transitions: RunCommand, now: datetime | None = None) -> Run:
    """A run built through the real aggregate (no database); its events are still pending."""
    now = FakeClock().now if now is None else now
    run = Run.create(first.run_id or "run_1", first, first.at or now, now)
    for transition in transitions:
        run.execute(transition, now)
    return run


def run_in(status: RunStatus, run_id: str = "run_1") -> Run:
    """A new run brought to `status` by ROUTES: created at T0, then one event a second."""
    steps = ROUTES[status]
    return run_from(
        create_command(run_id, at=at(0)),
        *(run_command(name, run_id, at=at(i + 1)) for i, name in enumerate(steps)),
    )


def parsed_create(line: Mapping[str, Any]) -> CreateRun:
    """An `apply` line that is a create, parsed into the model the aggregate takes."""
    parsed = parse(line)
    if not isinstance(parsed, CreateRun):
        raise TypeError(f"{line.get('command')!r} is not a create")
    return parsed


def parsed_transition(line: Mapping[str, Any]) -> RunCommand:
    """An `apply` line that is a transition, parsed into the model the aggregate takes."""
    parsed = parse(line)
    if not isinstance(parsed, RunCommand):
        raise TypeError(f"{line.get('command')!r} is not a transition")
    return parsed


def events_from(
    lines: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> list[RunEvent]:
    """The events the aggregate appends for `apply` lines: a create, then transitions."""
    first, *rest = lines
    run = run_from(parsed_create(first), *map(parsed_transition, rest), now=now)
    return cast(list[RunEvent], list(run.pending_events))


# The command line (tests/e2e) -----------------------------------------------------------------


def from_now(seconds: float, *, now: datetime | None = None) -> str:
    """The ISO text of the real clock plus some seconds: a `runledger` process reads that clock.
    Moments that must lie a set time apart share one reading of it (`now`): read twice, the
    clock may cross a millisecond between the two."""
    return timestamps.to_iso((now or datetime.now(UTC)) + timedelta(seconds=seconds))


def nested_json(depth: int) -> str:
    """JSON text of `depth` arrays one inside the other, `[[...]]`, built without recursion."""
    return "[" * depth + "]" * depth


# The read model (projection tests) ------------------------------------------------------------


def workday(start: datetime, runs_per_workspace: int) -> list[dict[str, Any]]:
    """The commands of scripts/workload.py's realistic day from `start`, in the order sent."""
    scripts = str(Path(__file__).resolve().parent.parent / "scripts")
    if scripts not in sys.path:
        sys.path.append(scripts)
    from workload import Day  # noqa: PLC0415 - scripts/ is not a package

    return Day(start=start, runs_per_workspace=runs_per_workspace).commands()


def record(ledger: Ledger, lines: Iterable[Mapping[str, Any]], *, per_save: int = 100) -> int:
    """Records the events of valid `apply` lines fast: each run decides through the real
    aggregate, and the events of `per_save` lines are saved in one transaction, so the log
    interleaves runs as it would have. Duplicates append nothing. Returns the events recorded."""
    runs: dict[str, Run] = {}
    touched: dict[str, Run] = {}
    now = ledger.now()
    recorded = 0
    for index, line in enumerate(lines, start=1):
        parsed = parse(line)
        if isinstance(parsed, CreateRun):
            run_id = parsed.run_id or "run_1"
            if run_id not in runs:
                runs[run_id] = Run.create(run_id, parsed, parsed.at or now, now)
                touched[run_id] = runs[run_id]
                recorded += 1
        elif isinstance(parsed, RunCommand) and runs[parsed.run_id].execute(parsed, now):
            touched[parsed.run_id] = runs[parsed.run_id]
            recorded += 1
        if index % per_save == 0 and touched:
            ledger.save(*touched.values())
            touched.clear()
    if touched:
        ledger.save(*touched.values())
    return recorded


@contextmanager
def opened_view(ledger: Ledger, *, shadow: bool = False) -> Iterator[RunsView]:
    """The ledger's read model, its tables created; closes its listening connection, if any."""
    view = readmodel.open_view(ledger, shadow=shadow)
    try:
        yield view
    finally:
        if isinstance(view, PostgresRunsView):
            view.close()


def row_differences(
    row: Mapping[str, Any] | None, expected: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(column, row's value, expected value) for each column where a read-model row differs
    from the expected one. JSON columns compare as JSON values (`payload.same`), since
    PostgreSQL's jsonb reorders keys; other columns compare by type and value."""
    if row is None:
        return [("(row)", None, expected)]
    differences = []
    for column in COLUMNS:
        mine, theirs = row.get(column), expected[column]
        if column in JSON_COLUMNS:
            same = payload.same(*(None if t is None else payload.loads(t) for t in (mine, theirs)))
        else:
            same = type(mine) is type(theirs) and mine == theirs
        if not same:
            differences.append((column, mine, theirs))
    return differences


def replayed_rows(ledger: Ledger, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The rows that the fold of each run's events gives, by run id."""
    return {run_id: to_row(fold(ledger.history(run_id))) for run_id in run_ids}


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///...` URL."""
    return url.removeprefix("sqlite:///")


def behind_the_ledgers_back(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Runs one SQL statement on the ledger's database directly (to corrupt it on purpose),
    commits, and returns the rows it returned. Placeholders are `%s` on every backend."""
    if url.startswith("sqlite:"):
        with closing(sqlite3.connect(sqlite_path(url))) as connection, connection:
            return list(connection.execute(statement.replace("%s", "?"), params).fetchall())
    with psycopg.connect(url, autocommit=True) as server:
        cursor = server.execute(statement.encode(), params)
        return list(cursor.fetchall()) if cursor.description else []


def insert_stored_event(ledger: Ledger, run_id: str, version: int, topic: str, state: bytes) -> int:
    """Inserts a stored event into the ledger's log by hand, bypassing every rule (a poison
    event); returns its position in the log."""
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    insert = f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
    insert += "VALUES (%s, %s, %s, %s)"
    url = ledger.database.url
    if ledger.database.backend == "sqlite":
        behind_the_ledgers_back(url, insert, run_id, version, topic, state)
        rows = behind_the_ledgers_back(url, f"SELECT max(rowid) FROM {table}")
    else:
        insert += " RETURNING notification_id"
        rows = behind_the_ledgers_back(url, insert, run_id, version, topic, state)
    return int(rows[0][0])


def stored_state(ledger: Ledger, run_id: str, version: int) -> tuple[str, bytes]:
    """The topic and stored state (JSON bytes) of one recorded event."""
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    rows = behind_the_ledgers_back(
        ledger.database.url,
        f"SELECT topic, state FROM {table} WHERE originator_id = %s AND originator_version = %s",
        run_id,
        version,
    )
    return str(rows[0][0]), bytes(rows[0][1])


# Audit: histories to export, import and read back -------------------------------------------


def audit_trail() -> list[dict[str, Any]]:
    """A small ledger's commands, in order: two workspaces, a parent run and its child, every
    ending and a run left open, actors, reasons, keys, a link, exact numbers, awkward text."""
    return [
        create(
            "run_a",
            at=at(0),
            idempotencyKey="create-a",
            input=payload.loads('{"amount":1.10,"note":"naïve ☃ \\u2028 \\u202e"}'),
        ),
        create(
            "run_b",
            parentRunId="run_a",
            mode="sync",
            triggeredBy="agent",
            cfWorkflowId="cf_b",
            at=at(1),
        ),
        create("run_c", workspaceId="ws_2", at=at(2)),
        create("run_d", workspaceId="ws_2", at=at(2)),
        command("start", "run_a", at=at(3), actor="system"),
        command("wait", "run_a", at=at(4), reason="approval\n\x1b[31m"),
        command("start", "run_b", at=at(4), actor="agent_7"),
        command("linkCfWorkflow", "run_a", at=at(5), cfWorkflowId="cf_a"),
        command("resume", "run_a", at=at(6)),
        command("pause", "run_b", at=at(6), reason="operator hold"),
        command(
            "complete",
            "run_a",
            at=at(9),
            idempotencyKey="end-a",
            output=payload.loads('{"total":1E+5,"items":[1,2.5,3.14159265358979323846]}'),
        ),
        command("fail", "run_b", at=at(9), actor="system", error="worker lost heartbeat"),
        command("cancel", "run_c", at=at(10), reason="duplicate order"),
        command("timeOut", "run_d", at=at(12)),
        create("run_e", workspaceId="ws_2", at=at(13)),
        command("start", "run_e", at=at(13)),
    ]


AUDIT_RUNS = ("run_a", "run_b", "run_c", "run_d", "run_e")
"""The runs of `audit_trail()`."""


def differing_rows(
    rows: Mapping[str, Mapping[str, Any]], expected: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[tuple[str, Any, Any]]]:
    """`row_differences` for each expected run whose row differs (or is missing), by run id;
    empty when every row is as expected."""
    found = {run_id: row_differences(rows.get(run_id), row) for run_id, row in expected.items()}
    return {run_id: columns for run_id, columns in found.items() if columns}
