"""Deciding a group of commands against one read of their runs.

Commands are decided in order, each against its own run as the commands before it left it
(so per-run order holds), and a rejected command changes nothing for the others. The runs
that accepted commands are then saved in one transaction by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import cast

from eventsourcing.application import project_aggregate
from eventsourcing.persistence import Mapper, StoredEvent

from domain.commands import AnyCommand, CreateRun
from domain.errors import RunLedgerError, RunNotFound
from domain.events import RunEvent
from domain.run import Run, check_parent
from projections.fold import RunState, fold, step

Outcome = RunState | RunLedgerError
Loader = Callable[[Collection[str]], dict[str, list[StoredEvent]]]


class Decisions:
    def __init__(self, load: Loader, mapper: Mapper[str], run_ids: Collection[str]) -> None:
        self._mapper = mapper
        self._events = {
            run_id: [cast(RunEvent, mapper.to_domain_event(e)) for e in stored]
            for run_id, stored in load(run_ids).items()
        }
        self._runs: dict[str, Run] = {}
        self._states: dict[str, RunState] = {}
        self.changed: dict[str, Run] = {}

    def decide(self, command: AnyCommand, run_id: str, now: datetime) -> Outcome:
        try:
            if isinstance(command, CreateRun):
                return self._create(command, run_id, now)
            run = self._run(run_id)
            if run is None:
                raise RunNotFound(run_id)
            before = len(run.pending_events)
            if run.execute(command, now):
                self._advance(run_id, run.pending_events[before:])
            return self._state(run_id)
        except RunLedgerError as rejection:
            return rejection

    def appended(self) -> list[Run]:
        return list(self.changed.values())

    def _create(self, command: CreateRun, run_id: str, now: datetime) -> RunState:
        existing = self._run(run_id)
        if existing is not None:
            existing.check_same_create(command)
            return self._state(run_id)
        parent = None if command.parent_run_id is None else self._run(command.parent_run_id)
        check_parent(command, parent)
        run = Run.create(run_id, command, command.at or now, now)
        self._runs[run_id] = run
        self._advance(run_id, run.pending_events)
        return self._state(run_id)

    def _run(self, run_id: str) -> Run | None:
        if run_id not in self._runs:
            events = self._events.get(run_id)
            if not events:
                return None
            self._runs[run_id] = cast(Run, project_aggregate(None, events))
        return self._runs[run_id]

    def _state(self, run_id: str) -> RunState:
        if run_id not in self._states:
            self._states[run_id] = fold(self._events[run_id])
        return self._states[run_id]

    def _advance(self, run_id: str, new: Sequence[object]) -> None:
        state = self._states.get(run_id)
        if state is None and run_id in self._events:
            state = self._state(run_id)
        for event in new:
            state = step(state, cast(RunEvent, event))
        assert state is not None
        self._states[run_id] = state
        self.changed[run_id] = self._runs[run_id]
