"""Commands kept inside one workspace, without a race.

A run's workspace is set by its creation and never changes, and runs are never deleted: a
run seen in workspace A is in A for good. So looking at a run's workspace and then executing
a command on it cannot race with anything. A run not seen yet is different: between a look
and the command, another workspace could create it. So a transition is executed only on a run
already seen in the workspace; on any other it is `not_found` without being executed (as if
it had come just before a concurrent creation, which is a valid order).

A create names its workspace, so it cannot act on another's run. One whose id is taken in
another workspace is a `conflict` that names no field of that run (the ledger's own message
lists the fields that differ, which would let a caller probe them).

A batch keeps its order run by run. Its commands go to the ledger in waves, each wave one
`execute_many` (one transaction, up to GROUP_SIZE commands): a transition on a run that a
create earlier in the same wave makes waits for the next wave, once the create's answer has
shown whose the run is; so does every later command of that run, and a create whose parent
waits. Commands of different runs commute (a run's rules read only its own events; a create
reads only whether its parent exists), so the answers are those of the batch in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from domain import identifiers
from domain.commands import AnyCommand, CreateRun
from domain.errors import Conflict, InvalidCommand, RunLedgerError, RunNotFound
from infrastructure.application import GROUP_SIZE, Ledger
from infrastructure.decisions import Outcome
from projections.fold import RunState

Item = AnyCommand | RunLedgerError
"""A command of a batch, or the rejection it met before reaching the ledger."""


def execute(ledger: Ledger, command: AnyCommand, workspace: str) -> RunState:
    """One command through the ledger's group commit, inside `workspace`."""
    if isinstance(command, CreateRun):
        _check_create(command, workspace)
        try:
            return ledger.execute(command)
        except Conflict as conflict:
            raise _discreet(ledger, conflict, command) from None
    if workspace_of(ledger, command.run_id) != workspace:
        raise RunNotFound(command.run_id)
    return ledger.execute(command)


def execute_batch(ledger: Ledger, items: Sequence[Item], workspace: str | None) -> list[Outcome]:
    """Every item's answer, in order; `workspace` None: any workspace (development mode)."""
    outcomes: list[Outcome | None] = [
        item if isinstance(item, RunLedgerError) else None for item in items
    ]
    pending = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if workspace is None:
        _execute(ledger, items, outcomes, pending)
        return cast(list[Outcome], outcomes)
    waves = _Waves(ledger, workspace)
    while pending:
        wave, pending = waves.plan(items, outcomes, pending)
        _execute(ledger, items, outcomes, wave)
        waves.learn(items, outcomes, wave)
    return cast(list[Outcome], outcomes)


def workspace_of(ledger: Ledger, run_id: str) -> str | None:
    """The run's workspace, or None if there is no such run."""
    try:
        return ledger.state(run_id).workspace_id
    except RunNotFound:
        return None


class _Waves:
    def __init__(self, ledger: Ledger, workspace: str) -> None:
        self.ledger, self.workspace = ledger, workspace
        self.seen: dict[str, str | None] = {}
        """Each run looked at: its workspace, or None if it did not exist."""

    def plan(
        self, items: Sequence[Item], outcomes: list[Outcome | None], pending: list[int]
    ) -> tuple[list[int], list[int]]:
        """The next wave, and what waits for a later one; answers the commands it refuses."""
        wave, later = [], []
        created: set[str] = set()
        waiting: set[str] = set()
        for index in pending:
            command = cast(AnyCommand, items[index])
            run_id = _run_id(command)
            if isinstance(command, CreateRun):
                if command.workspace_id != self.workspace:
                    outcomes[index] = _foreign_create(command, self.workspace)
                elif {run_id, command.parent_run_id} & waiting:
                    waiting.add(run_id or "")
                    later.append(index)
                else:
                    wave.append(index)
                    created.add(run_id or "")
            elif run_id in waiting:
                later.append(index)
            elif run_id in created and self.seen.get(run_id) != self.workspace:
                waiting.add(run_id)
                later.append(index)
            elif self._ours(run_id or ""):
                wave.append(index)
            else:
                outcomes[index] = RunNotFound(run_id or "")
        return wave, later

    def learn(self, items: Sequence[Item], outcomes: list[Outcome | None], wave: list[int]) -> None:
        """What the wave's answers show about whose runs are whose."""
        for index in wave:
            command, outcome = cast(AnyCommand, items[index]), outcomes[index]
            if isinstance(outcome, RunState):
                self.seen[outcome.id] = outcome.workspace_id
            elif isinstance(command, CreateRun) and (run_id := _run_id(command)) is not None:
                self.seen.pop(run_id, None)  # look again: someone else may have made it
                if isinstance(outcome, Conflict):
                    outcomes[index] = _discreet(self.ledger, outcome, command)

    def _ours(self, run_id: str) -> bool:
        if run_id not in self.seen:
            self.seen[run_id] = workspace_of(self.ledger, run_id)
        return self.seen[run_id] == self.workspace


def _execute(
    ledger: Ledger, items: Sequence[Item], outcomes: list[Outcome | None], indexes: list[int]
) -> None:
    for start in range(0, len(indexes), GROUP_SIZE):
        group = indexes[start : start + GROUP_SIZE]
        answers = ledger.execute_many([cast(AnyCommand, items[index]) for index in group])
        for index, answer in zip(group, answers, strict=True):
            outcomes[index] = answer


def _run_id(command: AnyCommand) -> str | None:
    """The run a command is for; None for a create whose id the ledger will make up."""
    if not isinstance(command, CreateRun):
        return command.run_id
    if command.run_id is None and command.idempotency_key is not None:
        return identifiers.derived_run_id(command.workspace_id, command.idempotency_key)
    return command.run_id


def _check_create(command: CreateRun, workspace: str) -> None:
    if command.workspace_id != workspace:
        raise _foreign_create(command, workspace)


def _foreign_create(command: CreateRun, workspace: str) -> InvalidCommand:
    return InvalidCommand(
        f"create: workspaceId {command.workspace_id!r} is not the workspace of this request "
        f"({workspace!r})"
    )


def _discreet(ledger: Ledger, conflict: Conflict, command: CreateRun) -> Conflict:
    """The conflict, unless the run is another workspace's: then one that tells nothing."""
    run_id = _run_id(command)
    if run_id is None or workspace_of(ledger, run_id) in (None, command.workspace_id):
        return conflict
    return Conflict(f"run id {run_id!r} is taken; choose another runId")
