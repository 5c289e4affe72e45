"""Shapes of responses that the service writes as plain JSON, declared for the document.

The run's view, the list, stats and the tree have models of their own (projections/view.py,
projections/queries.py); these describe the rest.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from domain.status import Command, RunStatus
from projections.view import WorkflowRun


class _Shape(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Rejection(_Shape):
    code: str
    message: str


class Accepted(_Shape):
    ok: Literal[True]
    run: WorkflowRun


class Rejected(_Shape):
    ok: Literal[False]
    error: Rejection


Answer = Accepted | Rejected
"""A batch's answer to one command, as `runledger apply` prints it."""


class HistoryEntry(_Shape):
    """One event of a run, as `runledger history` prints it; the event's own fields follow
    (`workspaceId`... for a create, `output`, `error`, `cfWorkflowId`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    run_id: str
    version: int
    event: Command
    event_type: str
    status_before: RunStatus | None
    status_after: RunStatus
    at: str
    recorded_at: str
    actor: str | None
    reason: str | None
    idempotency_key: str | None


class Lag(_Shape):
    position: int
    head: int
    behind_events: int
    behind_seconds: float
    dead_letters: int


class Readiness(_Shape):
    ready: bool
    detail: str
    projection: Literal["beside", "apart"]
    """beside: in this process (`serve --with-projection`); apart: `runledger project --follow`."""
    lag: Lag | None


class Health(_Shape):
    status: Literal["ok"]


def readiness(
    ready: bool, detail: str, projection: str, lag: dict[str, Any] | None
) -> dict[str, Any]:
    return {"ready": ready, "detail": detail, "projection": projection, "lag": lag}
