"""The ledger application: load a run, let it decide, save what it appended.

Library errors are translated here, at the boundary, into the domain's rejections.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar, cast

from eventsourcing.application import Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    Mapper,
    RecordConflictError,
    StoredEvent,
)
from eventsourcing.utils import Environment, EnvType

from domain import commands, identifiers, timestamps
from domain.commands import AnyCommand, CreateRun
from domain.errors import Conflict, RunLedgerError, RunNotFound
from domain.events import RunEvent
from domain.run import Run
from infrastructure import eventstore
from infrastructure.decisions import Decisions, Known, Outcome
from infrastructure.group_commit import GroupCommit
from infrastructure.settings import Database, parse_database_url
from projections.fold import RunState, fold, step, view_text

Clock = Callable[[], datetime]
T = TypeVar("T")

MAX_ATTEMPTS = 8
"""How many times a group is tried when a concurrent writer appended to one of its runs."""

GROUP_SIZE = 500
"""The most commands decided and saved in one transaction."""

KNOWN_RUNS = 10_000
"""Runs whose events the write path keeps, to decide without reading them first."""

READ_CACHE_SIZE = 10_000
"""Run states kept in memory for reads; each read still fetches the run's newer events."""


def system_clock() -> datetime:
    return datetime.now(UTC)


class Ledger(Application[str]):
    """The run ledger over one database: commands in, run states out."""

    name = "runledger"

    def __init__(self, database_url: str, *, clock: Clock = system_clock) -> None:
        self.database: Database = parse_database_url(database_url)
        self.clock = clock
        self._group = GroupCommit(self.execute_many, max_group=GROUP_SIZE)
        self._cache: OrderedDict[str, RunState] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._rendered: dict[str, tuple[int, str]] = {}
        self._known: OrderedDict[str, Known] = OrderedDict()
        self._known_lock = threading.Lock()
        super().__init__(env=self.database.env)
        sqlite_file = self.env.get("SQLITE_DBNAME") if self.database.backend == "sqlite" else None
        self.in_memory = sqlite_file is not None and "mode=memory" in sqlite_file
        """An in-memory SQLite database: this process's alone."""
        self._probe = eventstore.VersionProbe(
            self.recorder, None if self.in_memory else sqlite_file
        )

    def close(self) -> None:
        probe = getattr(self, "_probe", None)  # absent if the constructor failed
        if probe is not None:
            probe.close()
        recorder = getattr(self, "recorder", None)
        if isinstance(recorder, eventstore.Writer):
            recorder.release()
        super().close()

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # The ledger's settings come from its database URL alone, never from stray
        # environment variables (such as POSTGRES_ENABLE_DB_FUNCTIONS).
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[str]:
        library = super().construct_mapper()
        return eventstore.RunMapper(library.transcoder, library.compressor, library.cipher)

    def construct_recorder(self) -> ApplicationRecorder:
        recorder = super().construct_recorder()
        if not isinstance(recorder, eventstore.Writer):  # the settings name one of the ledger's
            raise TypeError(f"the ledger cannot write through a {type(recorder).__name__}")
        return recorder

    def now(self) -> datetime:
        return timestamps.truncate(self.clock())

    # Commands ------------------------------------------------------------------------------

    def submit(self, data: Mapping[str, Any], *, size: int | None = None) -> RunState:
        """Validates and executes one command given as a mapping, as `apply` reads it."""
        return self.execute(commands.parse(data, size=size))

    def execute(self, command: AnyCommand) -> RunState:
        """Executes one command; concurrent callers share a transaction (group commit)."""
        outcome = self._group.submit(command)
        if isinstance(outcome, RunLedgerError):
            raise outcome
        return outcome

    def execute_many(self, group: Sequence[AnyCommand]) -> list[Outcome]:
        """Decides the commands in order and saves what they append in one transaction;
        each gets its own answer: the run's state, or the rejection.

        The first attempt trusts the runs this process saved or read last, and that a run to
        create that it does not know is new (infrastructure/decisions.py): most groups then
        read nothing before writing. Any doubt, and later attempts, read the store."""
        plan = _Plan(group, self._run_id_for)
        for attempt in range(MAX_ATTEMPTS):
            decisions, outcomes = self._decide(plan, trusting=attempt == 0)
            if decisions.unsure:
                continue  # decide again from the store
            histories = decisions.histories()
            if self._saved(decisions.appended(), attempt):
                self._learn(histories)
                self._remember(outcomes)
                return outcomes
            self._forget(plan.involved)
        contended = decisions.changed.keys()
        return [
            self._contended(run_id) if run_id in contended else outcome
            for run_id, outcome in zip(plan.run_ids, outcomes, strict=True)
        ]

    # Queries -------------------------------------------------------------------------------

    def state(self, run_id: str) -> RunState:
        """The run's state now. A state kept from an earlier read or write is used when the
        store's latest version for the run says it is current, and brought up to date
        with the newer events otherwise."""
        with self._cache_lock:
            cached = self._cache.get(run_id)
        if cached is None:
            state = fold(self.history(run_id))
        elif self._probe.latest(run_id) == cached.version:
            return cached
        else:
            state = cached
            for event in self.events.get(run_id, gt=cached.version):
                state = step(state, cast(RunEvent, event))
        self._remember([state])
        return state

    def view_json(self, run_id: str) -> str:
        """`show`: the run's WorkflowRun as JSON text, rendered once per version."""
        state = self.state(run_id)
        rendered = self._rendered.get(run_id)
        if rendered is None or rendered[0] != state.version:
            rendered = (state.version, view_text(state))
            self._rendered[run_id] = rendered
        return rendered[1]

    def history(self, run_id: str) -> list[RunEvent]:
        events = cast(list[RunEvent], list(self.events.get(run_id)))
        if not events:
            raise RunNotFound(run_id)
        return events

    # Internals -----------------------------------------------------------------------------

    def _decide(
        self, plan: _Plan, *, trusting: bool, pending: Mapping[str, Known] | None = None
    ) -> tuple[Decisions, list[Outcome]]:
        """Decides a group's commands: trusting what is known, and `pending` (runs as a group
        not saved yet leaves them), or from the store."""
        known: dict[str, Known] | None = None
        if trusting:
            known = {}
            with self._known_lock:
                for run_id in plan.involved:
                    if run_id in self._known:
                        known[run_id] = self._known[run_id]
            if pending:
                for run_id in plan.involved:
                    if run_id in pending:
                        known[run_id] = pending[run_id]
        decisions = Decisions(
            self._histories,
            self.mapper,
            plan.involved,
            known=known,
            new=plan.new if trusting else (),
        )
        now = self.now()  # the group's: its events are recorded in one transaction
        outcomes = []
        for command, run_id in zip(plan.group, plan.run_ids, strict=True):
            outcomes.append(decisions.decide(command, run_id, now))
        return decisions, outcomes

    def _histories(self, run_ids: Collection[str]) -> dict[str, list[StoredEvent]]:
        return eventstore.histories(self.recorder, run_ids)

    def _run_id_for(self, command: AnyCommand) -> str:
        if not isinstance(command, CreateRun):
            return command.run_id
        if command.run_id is not None:
            return command.run_id
        if command.idempotency_key is not None:
            return identifiers.derived_run_id(command.workspace_id, command.idempotency_key)
        return identifiers.new_run_id()

    def _saved(self, runs: Sequence[Run], attempt: int) -> bool:
        """Saves the runs' new events in one transaction; False when a concurrent writer
        appended to one of them first (then the group is decided again)."""
        if not runs:
            return True
        # What `save` does, less its runtime protocol checks (about 30 us a command), the
        # recordings made for `_notify` (which does nothing here) and the aggregate cache (off).
        stored = []
        for run in runs:
            for event in run.collect_events():
                stored.append(self.mapper.to_stored_event(event))
        try:
            self.recorder.insert_events(stored)
        except RecordConflictError:
            time.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311 - jitter, not crypto
            return False
        return True

    def _remember(self, outcomes: Iterable[Outcome]) -> None:
        with self._cache_lock:
            for outcome in outcomes:
                if isinstance(outcome, RunState):
                    self._cache[outcome.id] = outcome
                    self._cache.move_to_end(outcome.id)
            while len(self._cache) > READ_CACHE_SIZE:
                forgotten, _ = self._cache.popitem(last=False)
                self._rendered.pop(forgotten, None)

    def _learn(self, histories: Mapping[str, Known]) -> None:
        """Keeps the runs' events as just saved (or read), for the next group to trust."""
        with self._known_lock:
            for run_id, events in histories.items():
                self._known[run_id] = events
                self._known.move_to_end(run_id)
            while len(self._known) > KNOWN_RUNS:
                self._known.popitem(last=False)

    def _forget(self, run_ids: Iterable[str]) -> None:
        with self._known_lock:
            for run_id in run_ids:
                self._known.pop(run_id, None)

    def _contended(self, run_id: str) -> Conflict:
        return Conflict(
            f"run {run_id!r} was changed by concurrent writers {MAX_ATTEMPTS} times in a row; "
            "try the command again"
        )


class _Plan:
    """A group of commands, with the runs they name and involve, and the runs they create.

    (Here, in `Ledger._decide`, `_saved` and in `Decisions`, plain loops rather than
    comprehensions: on Python 3.11 each comprehension is a call of its own, and these run
    for every group, a lone writer's every command. Counted by callgrind, a lone writer's
    command went from 360,000 instructions to 328,000.)"""

    def __init__(self, group: Sequence[AnyCommand], run_id_for: Callable[[AnyCommand], str]):
        self.group = group
        self.run_ids: list[str] = []
        self.involved: set[str] = set()
        self.new: set[str] = set()
        for command in group:
            run_id = run_id_for(command)
            self.run_ids.append(run_id)
            self.involved.add(run_id)
            if isinstance(command, CreateRun):
                self.new.add(run_id)
                if command.parent_run_id is not None:
                    self.involved.add(command.parent_run_id)


class _Flight(NamedTuple, Generic[T]):
    """A group decided and being saved, with its caller's tag."""

    tag: T
    plan: _Plan
    outcomes: list[Outcome]
    histories: dict[str, Known]
    saved: Future[bool]


class Pipeline(Generic[T]):
    """`execute_many` for a stream of groups (`apply`), each group saved by a writer thread
    while the next is decided: the database's time, spent with the GIL released, overlaps
    the next group's Python.

    A group is decided trusting the runs as the group in flight leaves them. Once that group
    is saved, its outcomes are handed back (its runs learnt as `execute_many` learns them)
    and the next takes off. If the store refused it (a concurrent writer appended first),
    it goes through `execute_many` from the store, and so does the group decided on it. A
    group decided in doubt (a rejection or a no-op on trust) waits for the one in flight and
    goes through `execute_many` too. Groups come back in the order pushed, each with the tag
    it was pushed with; `flush` lands the group in flight.

    Only on PostgreSQL, whose server works in a process of its own: 60,000 lines of `apply`
    took 2.30-2.51 s against 2.73-3.03 s one group after the other. On SQLite the database's
    time is the process's own, and overlapping made it 5-8% slower (2.16-2.23 s against
    2.03-2.10 s), so there each group is decided and saved before the next.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._overlap = ledger.database.backend == "postgres"
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="runledger-writer")
        self._flight: _Flight[T] | None = None

    def push(self, tag: T, group: Sequence[AnyCommand]) -> list[tuple[T, list[Outcome]]]:
        """Decides the group and starts saving it, once the group in flight has landed;
        returns the groups done meanwhile, with their tags."""
        ledger = self._ledger
        if not self._overlap:
            return [(tag, ledger.execute_many(group))]
        plan = _Plan(group, ledger._run_id_for)
        pending = None if self._flight is None else self._flight.histories
        decisions, outcomes = ledger._decide(plan, trusting=True, pending=pending)
        done = []
        if self._flight is not None:
            landed, saved = self._land()
            done.append(landed)
            decisions.unsure |= not saved  # decided on events that were not saved
        if decisions.unsure or not decisions.changed:
            done.append((tag, ledger.execute_many(group)))
        else:
            saving = self._writer.submit(ledger._saved, decisions.appended(), 0)
            self._flight = _Flight(tag, plan, outcomes, decisions.histories(), saving)
        return done

    def flush(self) -> list[tuple[T, list[Outcome]]]:
        """Lands the group in flight, if any."""
        return [] if self._flight is None else [self._land()[0]]

    def close(self) -> None:
        """Waits for the writer thread (a group still in flight is saved, not answered)."""
        self._writer.shutdown(wait=True)

    def _land(self) -> tuple[tuple[T, list[Outcome]], bool]:
        """The group in flight, once saved (or, if refused, decided and saved again)."""
        assert self._flight is not None
        flight, self._flight = self._flight, None
        ledger = self._ledger
        if flight.saved.result():
            ledger._learn(flight.histories)
            ledger._remember(flight.outcomes)
            return (flight.tag, flight.outcomes), True
        ledger._forget(flight.plan.involved)
        return (flight.tag, ledger.execute_many(flight.plan.group)), False
