"""A run's history for auditors: each event with the status before and after it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from domain import payload, timestamps
from domain.events import CfWorkflowLinked, RunCompleted, RunCreated, RunEvent, RunFailed
from domain.status import RunStatus


def entries(events: Iterable[RunEvent]) -> Iterator[dict[str, Any]]:
    """One JSON-ready mapping per event, oldest first."""
    status: RunStatus | None = None
    for event in events:
        after = event.status_after(status) if status is not None else RunStatus.PENDING
        yield {
            "runId": event.originator_id,
            "version": event.originator_version,
            "event": event.command.value,
            "eventType": type(event).__name__,
            "statusBefore": status,
            "statusAfter": after,
            "at": timestamps.to_iso(event.at),
            "recordedAt": timestamps.to_iso(event.timestamp),
            "actor": event.actor,
            "reason": event.reason,
            "idempotencyKey": event.idempotency_key,
            **_payload(event),
        }
        status = after


def _payload(event: RunEvent) -> dict[str, Any]:
    if isinstance(event, RunCreated):
        return {
            "workspaceId": event.workspace_id,
            "subjectId": event.subject_id,
            "userId": event.user_id,
            "parentRunId": event.parent_run_id,
            "mode": event.mode,
            "triggeredBy": event.triggered_by,
            "input": payload.loads(event.input_json),
            "cfWorkflowId": event.cf_workflow_id,
        }
    if isinstance(event, RunCompleted):
        return {"output": payload.loads(event.output_json)}
    if isinstance(event, RunFailed):
        return {"error": event.error}
    if isinstance(event, CfWorkflowLinked):
        return {"cfWorkflowId": event.cf_workflow_id}
    return {}
