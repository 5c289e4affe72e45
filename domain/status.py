"""Run statuses, the commands that move a run, and the transition table as data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


OPEN_STATUSES = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING}
)
TERMINAL_STATUSES = frozenset(set(RunStatus) - OPEN_STATUSES)


class Command(StrEnum):
    """A command's name as `apply` spells it."""

    CREATE = "create"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    WAIT = "wait"
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    TIME_OUT = "timeOut"
    LINK_CF_WORKFLOW = "linkCfWorkflow"

    @property
    def cli_name(self) -> str:
        """The command's name on the command line: kebab-case."""
        return "".join(f"-{c.lower()}" if c.isupper() else c for c in self.value)


class Mode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class TriggeredBy(StrEnum):
    WORKFLOW = "workflow"
    AGENT = "agent"
    SWARM = "swarm"
    USER = "user"
    EVENT = "event"


@dataclass(frozen=True)
class Transition:
    """Where a command may be applied from, and the status it moves the run to."""

    allowed_from: frozenset[RunStatus]
    to: RunStatus | None  # None: the status is unchanged

    def target(self, current: RunStatus) -> RunStatus:
        return current if self.to is None else self.to


_CAN_END = OPEN_STATUSES

TRANSITIONS: Mapping[Command, Transition] = {
    Command.START: Transition(frozenset({RunStatus.PENDING}), RunStatus.RUNNING),
    Command.PAUSE: Transition(frozenset({RunStatus.RUNNING, RunStatus.WAITING}), RunStatus.PAUSED),
    Command.RESUME: Transition(frozenset({RunStatus.PAUSED, RunStatus.WAITING}), RunStatus.RUNNING),
    Command.WAIT: Transition(frozenset({RunStatus.RUNNING}), RunStatus.WAITING),
    Command.COMPLETE: Transition(frozenset({RunStatus.RUNNING}), RunStatus.COMPLETED),
    Command.FAIL: Transition(_CAN_END, RunStatus.FAILED),
    Command.CANCEL: Transition(_CAN_END, RunStatus.CANCELLED),
    Command.TIME_OUT: Transition(_CAN_END, RunStatus.TIMED_OUT),
    Command.LINK_CF_WORKFLOW: Transition(frozenset(RunStatus), None),
}
"""Every command but `create`, which applies only where no run exists yet."""
