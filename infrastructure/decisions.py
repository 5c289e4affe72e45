"""Deciding a group of commands against one read of their runs.

Commands are decided in order, each against its own run as the commands before it left it
(so per-run order holds), and a rejected command changes nothing for the others. The runs
that accepted commands are then saved in one transaction by the caller.

A first attempt may trust what the process already knows instead of reading the store: the
runs it saved or read last (`known`), and that a run it is asked to create, and does not
know, does not exist yet. Saving proves such decisions right, since the store refuses an
event whose version is taken; when it refuses, the caller decides again from the store. A
rejection or a no-op proves nothing, so a trusting attempt that made one is marked
`unsure`, and the caller decides that group again from the store before answering.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from eventsourcing.persistence import Mapper, StoredEvent

from domain.commands import AnyCommand, CreateRun
from domain.errors import RunLedgerError, RunNotFound
from domain.events import RunEvent
from domain.run import Run, check_parent
from projections.fold import RunState, fold, step

Outcome = RunState | RunLedgerError


class Known(NamedTuple):
    """A run as this process last saved or read it."""

    events: list[RunEvent]
    state: RunState


Loader = Callable[[Collection[str]], dict[str, list[StoredEvent]]]


class Decisions:
    def __init__(
        self,
        load: Loader,
        mapper: Mapper[str],
        run_ids: Collection[str],
        *,
        known: Mapping[str, Known] | None = None,
        new: Collection[str] = (),
    ) -> None:
        """`run_ids`: the runs the commands name; `known`: runs trusted rather than read;
        `new` (among `run_ids`): runs to be created, trusted not to exist unless known."""
        known = known or {}
        self._events: dict[str, Sequence[RunEvent]] = {}
        self._states: dict[str, RunState] = {}
        wanted = []
        for run_id in run_ids:
            if run_id in known:  # trusted
                self._events[run_id], self._states[run_id] = known[run_id]
            elif run_id not in new:  # a run to create is trusted to be absent
                wanted.append(run_id)
        if wanted:
            for run_id, stored in load(wanted).items():
                self._events[run_id] = [cast(RunEvent, mapper.to_domain_event(e)) for e in stored]
        self.trusting = len(wanted) < len(run_ids)
        self.unsure = False
        self._runs: dict[str, Run] = {}
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
            else:
                self.unsure = self.trusting  # a no-op: proved by nothing that is saved
            return self._state(run_id)
        except RunLedgerError as rejection:
            self.unsure = self.trusting
            return rejection

    def appended(self) -> list[Run]:
        return list(self.changed.values())

    def histories(self) -> dict[str, Known]:
        """Every run decided on, as it will be once the appended events are saved."""
        histories = {}
        for run_id, events in self._events.items():
            if events and run_id not in self.changed:
                histories[run_id] = Known(list(events), self._state(run_id))
        for run_id, run in self.changed.items():
            appended = cast("list[RunEvent]", run.pending_events)
            events = [*self._events.get(run_id, ()), *appended]
            histories[run_id] = Known(events, self._states[run_id])
        return histories

    def _create(self, command: CreateRun, run_id: str, now: datetime) -> RunState:
        existing = self._run(run_id)
        if existing is not None:
            self.unsure = self.trusting  # an answer from what is known, not from what is saved
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
            run = None
            for event in events:  # the library's project_aggregate, less its protocol check
                run = event.mutate(run)
            self._runs[run_id] = cast(Run, run)
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
