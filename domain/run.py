"""The run aggregate: it decides whether a command is accepted, and appends its event.

The aggregate keeps only what its rules need (status, the latest `at`, the idempotency keys
used, the linked workflow); the `WorkflowRun` view is folded from the events in projections/.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import BaseAggregate
from eventsourcing.utils import get_topic

from domain import payload, timestamps
from domain.commands import CompleteRun, CreateRun, RunCommand
from domain.errors import Conflict, IllegalTransition, InvalidCommand, OutOfOrder
from domain.events import EVENT_FOR, RunCompleted, RunCreated, RunEvent
from domain.status import TRANSITIONS, Command, RunStatus

_CREATE_FIELDS = (
    "workspace_id",
    "subject_id",
    "user_id",
    "parent_run_id",
    "mode",
    "triggered_by",
    "input",
    "cf_workflow_id",
)


class Run(BaseAggregate[str]):
    def __init__(self) -> None:
        # Filled in by RunCreated.apply(), which the library calls right after this.
        self.status: RunStatus
        self.created: RunCreated
        self.last_at: datetime
        self.cf_workflow_id: str | None
        self.keys: dict[str, RunEvent] = {}

    @classmethod
    def create(cls, run_id: str, command: CreateRun, at: datetime, now: datetime) -> Run:
        """A new run (its parent checked first, by `check_parent`)."""
        timestamps.check_not_in_future(at, now)
        # What the library's `_create` does, less the introspection it spends on finding
        # whether `create_id` needs arguments, when the id is given (2 us of 10 a create).
        event_class: Any = RunCreated  # a dataclass made by the library's metaclass
        created: RunCreated = event_class(
            originator_topic=get_topic(cls),
            originator_id=run_id,
            originator_version=cls.INITIAL_VERSION,
            timestamp=now,
            at=at,
            actor=None,
            reason=None,
            idempotency_key=command.idempotency_key,
            workspace_id=command.workspace_id,
            subject_id=command.subject_id,
            user_id=command.user_id,
            parent_run_id=command.parent_run_id,
            mode=command.mode.value,
            triggered_by=command.triggered_by.value,
            input_json=payload.dumps(command.input),
            cf_workflow_id=command.cf_workflow_id,
        )
        run: Run = created.mutate(None)
        run.pending_events.append(created)
        return run

    @property
    def workspace_id(self) -> str:
        return self.created.workspace_id

    def check_same_create(self, command: CreateRun) -> None:
        """A create for an existing run is a duplicate when it describes the same run."""
        recorded = self.created
        differing = [
            _camel(name)
            for name in _CREATE_FIELDS
            if not payload.same(_created_value(recorded, name), _command_value(command, name))
        ]
        if differing:
            raise Conflict(
                f"run {self.id!r} already exists with a different {', '.join(differing)}; "
                "a create for an existing id must describe the same run"
            )

    def execute(self, command: RunCommand, now: datetime) -> bool:
        """Applies a command: True if it appended an event, False for a duplicate or no-op."""
        if self._is_duplicate(command):
            return False
        self._check_allowed(command.kind)
        if command.kind is Command.LINK_CF_WORKFLOW and self._is_linked_to(command):
            return False  # linking the same id again is a no-op, whenever it comes
        at = command.at if command.at is not None else max(now, self.last_at)
        timestamps.check_not_in_future(at, now)
        self._check_in_order(at)
        self.trigger_event(
            EVENT_FOR[command.kind],
            timestamp=now,
            at=at,
            actor=command.actor,
            reason=command.reason,
            idempotency_key=command.idempotency_key,
            **command.event_fields(),
        )
        return True

    def _is_duplicate(self, command: RunCommand) -> bool:
        key = command.idempotency_key
        if key is None or key not in self.keys:
            return False
        recorded = self.keys[key]
        differing = _differences(recorded, command)
        if differing:
            used = f"{recorded.command.value} (version {recorded.originator_version})"
            raise Conflict(
                f"idempotency key {key!r} was already used on run {self.id!r} by a {used}, "
                + (
                    f"not a {command.kind.value}"
                    if differing == ["command"]
                    else f"with a different {', '.join(differing)}"
                )
                + "; a resent command must be the same, a new one needs a key of its own"
            )
        return True

    def _check_allowed(self, command: Command) -> None:
        transition = TRANSITIONS[command]
        if self.status not in transition.allowed_from:
            allowed = ", ".join(sorted(transition.allowed_from))
            raise IllegalTransition(
                f"cannot {command.value} run {self.id!r}: it is {self.status.value}, and "
                f"{command.value} is allowed only from {allowed}"
            )

    def _check_in_order(self, at: datetime) -> None:
        if at < self.last_at:
            raise OutOfOrder(
                f"at {timestamps.to_iso(at)} is earlier than the latest event of run "
                f"{self.id!r} ({timestamps.to_iso(self.last_at)})"
            )

    def _is_linked_to(self, command: RunCommand) -> bool:
        wanted = command.event_fields()["cf_workflow_id"]
        if self.cf_workflow_id is None:
            return False
        if self.cf_workflow_id == wanted:
            return True
        raise Conflict(
            f"run {self.id!r} is already linked to Cloudflare workflow "
            f"{self.cf_workflow_id!r}; it cannot be linked to {wanted!r}"
        )


def check_parent(command: CreateRun, parent: Run | None) -> None:
    """`parentRunId` must name a run that exists in the same workspace; `parent` is the run
    it names, or None if there is none."""
    if command.parent_run_id is not None and (
        parent is None or parent.workspace_id != command.workspace_id
    ):
        raise InvalidCommand(
            f"parentRunId {command.parent_run_id!r} names no run in workspace "
            f"{command.workspace_id!r}"
        )


def _differences(recorded: RunEvent, command: RunCommand) -> list[str]:
    """What makes the command other than the one recorded with its key: ["command"] for
    another kind, else the fields that differ (output, error, reason, cfWorkflowId; `at`
    and `actor` are not compared)."""
    if recorded.command is not command.kind:
        return ["command"]
    differing = []
    if isinstance(recorded, RunCompleted) and isinstance(command, CompleteRun):
        if not payload.same(payload.loads(recorded.output_json), command.output):
            differing.append("output")
    else:
        for name, value in command.event_fields().items():  # error, cf_workflow_id
            if getattr(recorded, name) != value:
                differing.append(_camel(name))
    if recorded.reason != command.reason:
        differing.append("reason")
    return differing


def _created_value(created: RunCreated, name: str) -> Any:
    return payload.loads(created.input_json) if name == "input" else getattr(created, name)


def _command_value(command: CreateRun, name: str) -> Any:
    value = getattr(command, name)
    return value.value if name in ("mode", "triggered_by") else value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
