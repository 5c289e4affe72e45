"""The `workflow_runs` read model: its columns, the row of a run state and back, and the
port that each backend's adapter implements (projections/sqlite.py, projections/postgres.py).

A row holds the seed's 17 fields, the extended timings, the run's version, and two columns
the incremental fold needs to go on from a row alone: `status_since` (when the current
status began, by the source's clock) and `recorded_at` (when the ledger recorded the run's
latest event). JSON columns hold NULL for a JSON null.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from threading import Event
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder

from domain import payload, timestamps
from domain.status import Mode, RunStatus, TriggeredBy
from projections.fold import RunState, to_timings, to_view
from projections.view import WorkflowRun

TABLE = "workflow_runs"
SHADOW_SUFFIX = "_rebuild"

VIEW_COLUMNS = (
    "id",
    "workspace_id",
    "subject_id",
    "parent_run_id",
    "status",
    "mode",
    "input",
    "output",
    "error",
    "triggered_by",
    "cf_workflow_id",
    "duration_ms",
    "user_id",
    "started_at",
    "completed_at",
    "created_at",
    "updated_at",
)
TIMING_COLUMNS = ("queued_ms", "running_ms", "paused_ms", "waiting_ms")
COLUMNS = (*VIEW_COLUMNS, *TIMING_COLUMNS, "version", "status_since", "recorded_at")
JSON_COLUMNS = frozenset({"input", "output"})
TIME_COLUMNS = frozenset(
    {"started_at", "completed_at", "created_at", "updated_at", "status_since", "recorded_at"}
)
INTEGER_COLUMNS = frozenset({"duration_ms", *TIMING_COLUMNS, "version"})

INDEXES: tuple[tuple[str, str], ...] = (
    ("workspace_created", "workspace_id, created_at DESC, id DESC, status, subject_id"),
    ("workspace_status", "workspace_id, status, created_at DESC, id DESC"),
    ("workspace_subject", "workspace_id, subject_id, created_at DESC, id DESC, status"),
    ("parent", "parent_run_id, created_at DESC, id DESC"),
    ("workspace_completed", "workspace_id, completed_at, subject_id, status, duration_ms"),
    ("workspace_idle", "workspace_id, status, updated_at, id"),
)
"""Secondary indexes, by name and columns, each serving the dashboard's queries
(projections/queries_*.py): the newest-first list and its cursor, and counts over a window
of `created_at` (`workspace_created`, covering status and subject); the list by status, one
status at a time (`workspace_status`); by subject, and a subject's counts
(`workspace_subject`); a run's children and trees (`parent`); durations and finished runs
over a window of `completed_at` (`workspace_completed`, covering); open runs idle the longest
(`workspace_idle`). The trailing columns let PostgreSQL answer counts from the index alone."""

_OPEN_TIMED = (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING)


def to_row(state: RunState) -> dict[str, Any]:
    """The row of a run: JSON as text (None for null), times as datetimes."""
    view, timings = to_view(state), to_timings(state)
    row: dict[str, Any] = {column: getattr(view, column) for column in VIEW_COLUMNS}
    row |= {column: getattr(timings, column) for column in TIMING_COLUMNS}
    row |= {"version": state.version, "status_since": state.status_since}
    row |= {"recorded_at": state.recorded_at}
    for column in ("status", "mode", "triggered_by"):
        row[column] = row[column].value
    row["input"], row["output"] = _column(state.input_json), _column(state.output_json)
    return row


def from_row(row: Mapping[str, Any]) -> RunState:
    """The run state a row was written from, to go on folding from it."""
    status = RunStatus(row["status"])
    started = row["started_at"]
    totals = {name: row[name] or 0 for name in ("running_ms", "paused_ms", "waiting_ms")}
    if started is not None and status in _OPEN_TIMED:  # the current stretch is not closed
        totals[f"{status.value}_ms"] -= timestamps.millis_between(
            row["status_since"], row["updated_at"]
        )
    return RunState(
        id=row["id"],
        workspace_id=row["workspace_id"],
        subject_id=row["subject_id"],
        user_id=row["user_id"],
        parent_run_id=row["parent_run_id"],
        mode=Mode(row["mode"]),
        triggered_by=TriggeredBy(row["triggered_by"]),
        input_json=_text(row["input"]),
        cf_workflow_id=row["cf_workflow_id"],
        status=status,
        output_json=_text(row["output"]),
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=started,
        completed_at=row["completed_at"],
        status_since=row["status_since"],
        version=row["version"],
        recorded_at=row["recorded_at"],
        **totals,
    )


def view_from_row(values: Sequence[Any]) -> WorkflowRun:
    """The WorkflowRun of a row's VIEW_COLUMNS, in that order (the view's own field names),
    straight from the row rather than through the run state: a page of a thousand runs takes
    a third of the time."""
    fields = dict(zip(VIEW_COLUMNS, values, strict=True))
    fields["input"], fields["output"] = _json(fields["input"]), _json(fields["output"])
    return WorkflowRun(**fields)


def _json(text: str | None) -> Any:
    return None if text is None else payload.loads(text)


def _column(text: str) -> str | None:
    """A JSON column's value: NULL for a JSON null."""
    return None if text == "null" else text


def _text(column: str | None) -> str:
    """A JSON column as the text `payload.dumps` writes (jsonb has a layout of its own)."""
    return "null" if column is None else payload.dumps(payload.loads(column))


@dataclass(frozen=True)
class DeadLetter:
    """An event the projection could not apply, set aside by an explicit option."""

    position: int
    run_id: str
    event_type: str
    error: str
    recorded_at: datetime


@dataclass(frozen=True)
class Lag:
    position: int
    head: int
    behind_seconds: float | None  # None: the oldest unapplied event cannot be read
    dead_letters: int

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "head": self.head,
            "behindEvents": self.head - self.position,
            "behindSeconds": None if self.behind_seconds is None else round(self.behind_seconds, 3),
            "deadLetters": self.dead_letters,
        }


class RunsView(TrackingRecorder, ABC):
    """The read model: rows of `workflow_runs` written with their tracking position in one
    transaction, so that a position is applied exactly once."""

    application_name: str = "runledger"
    table: str

    @abstractmethod
    def create_table(self) -> None:
        """Creates the table, its indexes, the tracking and dead-letter tables if missing."""

    @abstractmethod
    def states(self, run_ids: Collection[str]) -> dict[str, RunState]:
        """The states of those runs that have a row."""

    @abstractmethod
    def write(
        self,
        states: Sequence[RunState],
        tracking: Tracking,
        dead: Sequence[DeadLetter] = (),
        generation: int | None = None,
        previous: Mapping[str, RunState | None] | None = None,
    ) -> None:
        """Upserts rows (never to an older version) and advances the tracking position, in
        one transaction; raises IntegrityError if the position does not advance, or if the
        table's generation is not `generation` (a rebuild swapped a new table in).
        `previous`: each run's state as its row holds it before this write (None: no row),
        when the caller knows it (the projector does), so that it need not be read again."""

    @abstractmethod
    def rows(self, run_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Raw rows by id, as stored (for verify)."""

    @abstractmethod
    def run_ids_without_events(self, position: int) -> list[str]:
        """Ids of rows whose run has no event at or before the position."""

    @abstractmethod
    def event_run_ids(self, after: str, limit: int, position: int) -> list[str]:
        """Ids of runs with events at or before the position, in order, after `after`."""

    @abstractmethod
    def dead_letter_count(self) -> int: ...

    @abstractmethod
    def reset(self) -> None:
        """Drops and recreates the table empty, and forgets its tracking position."""

    @abstractmethod
    def swap_into(self, live: RunsView) -> bool:
        """Atomically replaces the live table by this one (a shadow built by `rebuild`),
        carrying its position over. False, changing nothing, if the live read model has
        applied more events than this one (then catch up and try again)."""

    def position(self) -> int:
        return self.max_tracking_id(self.application_name) or 0

    @property
    def generation_name(self) -> str:
        """The tracking row that counts the tables swapped in by `rebuild`."""
        return f"{self.application_name}#generation"

    def generation(self) -> int:
        return self.max_tracking_id(self.generation_name) or 0

    def wait_for(self, position: int, timeout: float, interrupt: Event | None = None) -> None:
        """Read-your-writes: blocks until the read model has applied `position`; raises
        TimeoutError after `timeout` seconds, WaitInterruptedError once `interrupt` is set."""
        if position > self.position():
            self.wait(self.application_name, position, timeout=timeout, interrupt=interrupt)

    @abstractmethod
    def wait_for_news(self, timeout: float) -> None:
        """Blocks until new events may have been recorded, or the timeout passes."""

    def rollup_disagreements(self) -> list[tuple[Any, Any, Any]]:
        """(key, stored figures, figures recounted from the rows) wherever a rollup that
        `stats` reads (projections/rollup.py) disagrees with the rows: keys are (workspace,
        subject, day) or (workspace, subject, hour); SQLite keeps no rollup."""
        return []

    @abstractmethod
    def events_of(self, run_ids: Collection[str], position: int) -> Iterator[Any]:
        """The stored events of those runs at or before the position, in run and version
        order (for verify)."""
