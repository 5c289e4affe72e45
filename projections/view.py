"""The `WorkflowRun` view exactly as the platform publishes it, and the ledger's timings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

from domain import payload, timestamps
from domain.status import Mode, RunStatus, TriggeredBy

Instant = Annotated[datetime, PlainSerializer(timestamps.to_iso, when_used="always")]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The camelCase fields in the seed's order, timestamps printed as toISOString()."""
        return self.model_dump(by_alias=True)

    def to_json(self) -> str:
        return payload.dumps(self.to_json_dict())


class WorkflowRun(_View):
    """The seed's 17 fields (shared/seed/WorkflowRun.md), nothing more."""

    id: str
    workspace_id: str
    subject_id: str
    parent_run_id: str | None
    status: RunStatus
    mode: Mode
    input: Any
    output: Any
    error: str | None
    triggered_by: TriggeredBy
    cf_workflow_id: str | None
    duration_ms: int | None
    user_id: str
    started_at: Instant | None
    completed_at: Instant | None
    created_at: Instant
    updated_at: Instant


class Timings(_View):
    """Time spent before starting and in each open status; all null for a run never started."""

    queued_ms: int | None
    running_ms: int | None
    paused_ms: int | None
    waiting_ms: int | None


class ExtendedView(_View):
    run: WorkflowRun
    timings: Timings
    version: int
