"""The ledger application: load a run, let it decide, save what it appended.

Library errors are translated here, at the boundary, into the domain's rejections.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from eventsourcing.application import Application, project_aggregate
from eventsourcing.persistence import ApplicationRecorder, RecordConflictError
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.utils import Environment, EnvType

from domain import commands, identifiers, timestamps
from domain.commands import AnyCommand, CreateRun, RunCommand
from domain.errors import Conflict, InvalidCommand, RunNotFound
from domain.events import RunCreated, RunEvent
from domain.run import Run
from infrastructure import postgres
from infrastructure.settings import Database, parse_database_url
from projections.fold import RunState, fold

Clock = Callable[[], datetime]

MAX_ATTEMPTS = 8
"""How many times a command is tried when a concurrent writer appended to the same run."""


def system_clock() -> datetime:
    return datetime.now(UTC)


class Ledger(Application[str]):
    """The run ledger over one database: commands in, run states out."""

    name = "runledger"

    def __init__(self, database_url: str, *, clock: Clock = system_clock) -> None:
        self.database: Database = parse_database_url(database_url)
        self.clock = clock
        super().__init__(env=self.database.env)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # The ledger's settings come from its database URL alone, never from stray
        # environment variables (such as POSTGRES_ENABLE_DB_FUNCTIONS).
        return Environment(name, dict(env or {}))

    def construct_recorder(self) -> ApplicationRecorder:
        recorder = super().construct_recorder()
        if isinstance(recorder, PostgresAggregateRecorder):
            postgres.create_tables_once(recorder, recorder.events_table_name)
        return recorder

    def now(self) -> datetime:
        return timestamps.truncate(self.clock())

    # Commands ------------------------------------------------------------------------------

    def submit(self, data: Mapping[str, Any], *, size: int | None = None) -> RunState:
        """Validates and executes one command given as a mapping, as `apply` reads it."""
        return self.execute(commands.parse(data, size=size))

    def execute(self, command: AnyCommand) -> RunState:
        if isinstance(command, CreateRun):
            return self.create(command)
        return self.transition(command)

    def create(self, command: CreateRun) -> RunState:
        run_id = self._run_id_for(command)
        for attempt in range(MAX_ATTEMPTS):
            events = self._events(run_id)
            if events:
                _replay(events).check_same_create(command)
                return fold(events)
            now = self.now()
            if command.parent_run_id is not None:
                self._check_parent(command)
            run = Run.create(run_id, command, command.at or now, now)
            appended = list(run.pending_events)
            if self._saved(run, attempt):
                return fold(cast(list[RunEvent], appended))
        raise self._contended(run_id)

    def transition(self, command: RunCommand) -> RunState:
        for attempt in range(MAX_ATTEMPTS):
            events = self._events(command.run_id)
            if not events:
                raise RunNotFound(command.run_id)
            run = _replay(events)
            if not run.execute(command, self.now()):
                return fold(events)
            appended = cast(list[RunEvent], list(run.pending_events))
            if self._saved(run, attempt):
                return fold([*events, *appended])
        raise self._contended(command.run_id)

    # Queries -------------------------------------------------------------------------------

    def state(self, run_id: str) -> RunState:
        return fold(self.history(run_id))

    def history(self, run_id: str) -> list[RunEvent]:
        events = self._events(run_id)
        if not events:
            raise RunNotFound(run_id)
        return events

    # Internals -----------------------------------------------------------------------------

    def _events(self, run_id: str) -> list[RunEvent]:
        return cast(list[RunEvent], list(self.events.get(run_id)))

    def _run_id_for(self, command: CreateRun) -> str:
        if command.run_id is not None:
            return command.run_id
        if command.idempotency_key is not None:
            return identifiers.derived_run_id(command.workspace_id, command.idempotency_key)
        return identifiers.new_run_id()

    def _check_parent(self, command: CreateRun) -> None:
        parent_id = cast(str, command.parent_run_id)
        first = list(self.events.get(parent_id, lte=1))
        if not first or cast(RunCreated, first[0]).workspace_id != command.workspace_id:
            raise InvalidCommand(
                f"parentRunId {parent_id!r} names no run in workspace {command.workspace_id!r}"
            )

    def _saved(self, run: Run, attempt: int) -> bool:
        """Saves the run's new events; False when a concurrent writer got there first."""
        try:
            self.save(run)
        except RecordConflictError:
            time.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311 - jitter, not crypto
            return False
        return True

    def _contended(self, run_id: str) -> Conflict:
        return Conflict(
            f"run {run_id!r} was changed by concurrent writers {MAX_ATTEMPTS} times in a row; "
            "try the command again"
        )


def _replay(events: Sequence[RunEvent]) -> Run:
    return cast(Run, project_aggregate(None, events))
