"""The run's events, in the past tense: one per accepted command, appended, never changed.

Every event carries when it happened by the source's clock (`at`), when the ledger recorded
it by its own clock (`timestamp`), who did it (`actor`), why (`reason`) and the command's
`idempotency_key`. Payloads (`input`, `output`) are stored as their exact JSON text.

Versions of the events' shape (`class_version`, stored with each event from version 2 on;
an event stored without one is version 1). An event is upcast on read, by the library's
mapper calling `upcast_vN_vN+1(state)` on the stored state, so the code sees one shape only.

    v1  the shape above, as the ledger stored every event until `runledger import` existed.
    v2  adds `first_recorded_at`: when a ledger first recorded the event, if that was another
        ledger. `runledger import` copies events from another ledger; it records them at its
        own time (`timestamp`: "as known at" reads this ledger's knowledge) and keeps the
        source's time here, so an auditor still learns when the event was first known,
        after any number of moves. None means this ledger recorded it first, at `timestamp`
        (every v1 event: nothing was imported before v2, so the upcast sets None, which is
        what a v1 event meant). The field changes no rule, view or timing.
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import CanInitAggregate, CanMutateAggregate, MetaDomainEvent
from eventsourcing.utils import resolve_topic

from domain.status import TRANSITIONS, Command, RunStatus

if TYPE_CHECKING:
    from domain.run import Run


class RunEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    command: ClassVar[Command]
    class_version: ClassVar[int] = 2

    originator_id: str
    originator_version: int
    timestamp: datetime
    at: datetime
    actor: str | None
    reason: str | None
    idempotency_key: str | None
    first_recorded_at: datetime | None = field(default=None, kw_only=True)

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["first_recorded_at"] = None

    @property
    def run_id(self) -> str:
        return self.originator_id

    @property
    def recorded_at(self) -> datetime:
        return self.timestamp

    @property
    def first_recorded(self) -> datetime:
        """When a ledger first recorded this event: here (`timestamp`) unless it was imported."""
        return self.timestamp if self.first_recorded_at is None else self.first_recorded_at

    def status_after(self, before: RunStatus) -> RunStatus:
        return TRANSITIONS[self.command].target(before)

    def apply(self, run: Run) -> None:
        run.status = self.status_after(run.status)
        run.last_at = self.at
        if self.idempotency_key is not None:
            run.keys[self.idempotency_key] = self


class RunCreated(CanInitAggregate[str], RunEvent):
    command = Command.CREATE

    originator_topic: str
    workspace_id: str
    subject_id: str
    user_id: str
    parent_run_id: str | None
    mode: str
    triggered_by: str
    input_json: str
    cf_workflow_id: str | None

    def status_after(self, before: RunStatus) -> RunStatus:
        return RunStatus.PENDING

    def mutate(self, aggregate: Any) -> Any:
        """The library's `CanInitAggregate.mutate`, for the one aggregate class it makes: a
        run, whose `__init__` takes no argument. The library finds that out by looking at the
        signatures of `__base_init__` and `__init__` each time, which took half the time of
        a create here (3.1 of 5.5 us; tests/unit/test_transitions.py checks the two agree)."""
        assert aggregate is None
        run_class: type[Run] = resolve_topic(self.originator_topic)
        run = run_class.__new__(run_class)
        run.__base_init__(self.originator_id, self.originator_version, self.timestamp)
        run.__init__()  # type: ignore[misc]
        self.apply(run)
        return run

    def apply(self, run: Run) -> None:
        run.status = RunStatus.PENDING
        run.created = self
        run.cf_workflow_id = self.cf_workflow_id
        run.keys = {}
        super().apply(run)


class RunStarted(RunEvent):
    command = Command.START


class RunPaused(RunEvent):
    command = Command.PAUSE


class RunResumed(RunEvent):
    command = Command.RESUME


class RunWaited(RunEvent):
    command = Command.WAIT


class RunCompleted(RunEvent):
    command = Command.COMPLETE
    output_json: str


class RunFailed(RunEvent):
    command = Command.FAIL
    error: str


class RunCancelled(RunEvent):
    command = Command.CANCEL


class RunTimedOut(RunEvent):
    command = Command.TIME_OUT


class CfWorkflowLinked(RunEvent):
    command = Command.LINK_CF_WORKFLOW
    cf_workflow_id: str

    def apply(self, run: Run) -> None:
        run.cf_workflow_id = self.cf_workflow_id
        super().apply(run)


EVENT_FOR: dict[Command, type[RunEvent]] = {
    event.command: event
    for event in (
        RunStarted,
        RunPaused,
        RunResumed,
        RunWaited,
        RunCompleted,
        RunFailed,
        RunCancelled,
        RunTimedOut,
        CfWorkflowLinked,
    )
}
