"""`runledger import`: appends an export's events to a ledger, by the domain's rules.

Each line is read against the export schema (infrastructure/exchange.py), then replayed
through the run aggregate as the command it records, so an import obeys every rule a live
command does: versions contiguous from the run's current version, a create only for a run
that does not exist (its parent in the same workspace), the transition allowed from the
status before, `at` not earlier than the run's latest event nor more than 5 minutes ahead of
this ledger's clock, identifiers and payload limits, idempotency keys and links used once.
The event keeps `at`, actor, reason and key; this ledger records it at its own time
(`timestamp`) and keeps the source's (`firstRecordedAt`, else `recordedAt`) as
`first_recorded_at`.

A line whose run already has that version is compared with the recorded event: the same
content (infrastructure/exchange.py `content`) is skipped, a difference is a clash
(`conflict`). Anything else wrong with a line is rejected with the domain's code.

What is written when a line is rejected, exactly:
- Events are written in batches of `BATCH_EVENTS`, one transaction each; every event of a
  batch is validated before the transaction starts, against the ledger plus the batch.
- The import stops at the first rejected line, N. Afterwards every line before N is in the
  ledger (imported now, or already present), and nothing from line N on is: the validated
  lines of the batch in progress are written in a last transaction, line N and the rest are
  not read further. The rejection names line N, its run and version, and says so.
- So no event is ever half-written, and every run holds a prefix of its history in the file,
  with no gap; the run named in the rejection holds exactly its events before line N.
- Re-running the same import (line N fixed) skips what is present and goes on from line N.
- A concurrent writer that appends to a run of the batch first makes the batch's transaction
  fail whole; the batch is then validated again against what the ledger now holds (lines
  that are now present are skipped, or clash), up to `MAX_ATTEMPTS` times.

Memory stays flat: lines are read one at a time, a batch holds at most `BATCH_EVENTS` events,
and the runs' states are cached for at most `CACHED_RUNS` runs (the others are read again
from the ledger when a later line needs them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, cast

from eventsourcing.persistence import RecordConflictError

from domain.commands import CreateRun
from domain.errors import Conflict, InvalidCommand, RunLedgerError, TooLarge
from domain.events import EVENT_FOR, RunEvent
from domain.run import Run, check_parent
from infrastructure import exchange, import_lines
from infrastructure.application import Ledger
from infrastructure.import_lines import ImportLine
from infrastructure.import_runs import ImportedRuns

BATCH_EVENTS = 1000
CACHED_RUNS = 4096
MAX_ATTEMPTS = 5


@dataclass
class ImportSummary:
    events: int = 0
    """Lines read, one event each (blank lines are not counted)."""
    imported: int = 0
    """Events appended to the ledger."""
    already_present: int = 0
    """Events the ledger already held, with the same content."""

    def to_json_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "imported": self.imported,
            "alreadyPresent": self.already_present,
        }


class Importer:
    def __init__(
        self,
        ledger: Ledger,
        *,
        batch_events: int = BATCH_EVENTS,
        cached_runs: int = CACHED_RUNS,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.batch_events = batch_events
        self.on_event = on_event
        self.runs = ImportedRuns(ledger, cached_runs)
        self.batch: list[tuple[ImportLine, RunEvent]] = []
        self.summary = ImportSummary()
        self._line_number = 0

    def run(self, lines: Iterable[bytes | TooLarge]) -> ImportSummary:
        """Imports every line, or raises the first rejection (see the module's docstring)."""
        try:
            for number, text in enumerate(lines, 1):
                self._line_number = number
                if isinstance(text, TooLarge):
                    raise TooLarge(f"line {number}: {text.message}")
                if not text.strip():
                    continue
                self.summary.events += 1
                self._take(import_lines.read_line(text, number))
                if self.on_event is not None:
                    self.on_event()
                if len(self.batch) >= self.batch_events:
                    self._flush()
            self._flush()
        except RunLedgerError as error:
            raise self._stopped(error) from None
        return self.summary

    # One line ------------------------------------------------------------------------------

    def _take(self, line: ImportLine) -> None:
        self._line_number = line.number
        run = self.runs.get(line.run_id)
        current = 0 if run is None else run.version
        try:
            if line.version <= current:
                self._check_same(line)
                self.summary.already_present += 1
                return
            if line.version > current + 1:
                raise InvalidCommand(
                    f"this ledger holds run {line.run_id!r} up to version {current}, so the "
                    f"next event must be version {current + 1}: versions have no gaps (was "
                    "the export cut, or filtered with --since, before this run began?)"
                )
            event = self._append(run, line)
        except RunLedgerError as error:
            error.message = f"{line.where}: {error.message}"
            error.args = (error.message,)
            raise
        self.batch.append((line, event))

    def _append(self, run: Run | None, line: ImportLine) -> RunEvent:
        """The event the line records, made by the aggregate under the domain's rules."""
        now = self.ledger.now()
        command = line.command
        if isinstance(command, CreateRun):
            parent = None if command.parent_run_id is None else self.runs.get(command.parent_run_id)
            check_parent(command, parent)
            run = Run.create(line.run_id, command, line.at, now)
        elif run is None:  # pragma: no cover - read_line makes version 1 a create
            raise InvalidCommand("the run does not exist")
        elif not run.execute(command, now):
            raise Conflict(_not_appended(run, line))
        (appended,) = run.collect_events()
        event: RunEvent = replace(cast(Any, appended), first_recorded_at=line.source_recorded_at)
        self.runs.put(run, event)
        return event

    def _check_same(self, line: ImportLine) -> None:
        recorded = self.runs.stored(line.run_id, line.version)
        ours, theirs = exchange.content(recorded), exchange.content(_as_event(line))
        differing = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if differing:
            raise Conflict(
                f"this ledger already holds version {line.version} of run {line.run_id!r} "
                f"({recorded.command.value} at {ours['at']}), and the line differs in "
                f"{', '.join(differing)}; an import never changes a recorded event"
            )

    # Batches -------------------------------------------------------------------------------

    def _flush(self) -> None:
        for _ in range(MAX_ATTEMPTS):
            if not self.batch:
                return
            try:
                self.ledger.events.put([event for _, event in self.batch])
            except RecordConflictError:
                self._validate_again()
                continue
            self.summary.imported += len(self.batch)
            self.batch.clear()
            self.runs.written()
            return
        first, last = self.batch[0][0], self.batch[-1][0]
        self.runs.forget(line.run_id for line, _ in self.batch)
        self.batch.clear()
        self._line_number = first.number
        raise Conflict(
            f"{first.where}: concurrent writers kept appending to the runs of lines "
            f"{first.number} to {last.number} ({MAX_ATTEMPTS} times); try the import again"
        )

    def _validate_again(self) -> None:
        """After a concurrent writer won: the batch again, against what the ledger now holds."""
        lines = [line for line, _ in self.batch]
        self.batch.clear()
        self.runs.forget(line.run_id for line in lines)
        for line in lines:
            self._take(line)

    def _stopped(self, error: RunLedgerError) -> RunLedgerError:
        """Writes what was validated before the rejected line, then says where it stopped."""
        number = self._line_number
        try:
            self._flush()
        except RunLedgerError as earlier:  # a concurrent writer changed an earlier line's run
            return self._stopped(earlier)
        done = self.summary
        error.message += (
            f". The import stopped at line {number}: the lines before it are in the ledger "
            f"({done.imported:,} imported, {done.already_present:,} already present) and "
            f"nothing from line {number} on was written; fix the line and run the same "
            "import again to go on from there"
        )
        error.args = (error.message,)
        return error


def _not_appended(run: Run, line: ImportLine) -> str:
    key = line.command.idempotency_key
    if key is not None and key in run.keys:
        return (
            f"idempotency key {key!r} is already used on run {run.id!r} (version "
            f"{run.keys[key].originator_version}); a ledger never appends a duplicate"
        )
    return (
        f"run {run.id!r} is already linked to Cloudflare workflow {run.cf_workflow_id!r}; "
        "a ledger never appends the same link twice"
    )


def _as_event(line: ImportLine) -> RunEvent:
    """The event a line describes, made without the rules, only to compare its content."""
    command = line.command
    if isinstance(command, CreateRun):
        (created,) = Run.create(line.run_id, command, line.at, line.at).collect_events()
        return cast(RunEvent, created)
    event_class: Any = EVENT_FOR[command.kind]
    return cast(
        RunEvent,
        event_class(
            originator_id=line.run_id,
            originator_version=line.version,
            timestamp=line.at,
            at=line.at,
            actor=command.actor,
            reason=command.reason,
            idempotency_key=command.idempotency_key,
            **command.event_fields(),
        ),
    )
