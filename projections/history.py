"""A run's history for auditors: each event with the status before and after it.

An entry holds what happened (`event`, `at` by the source's clock, `actor`, `reason`,
`idempotencyKey` and the event's own fields) and when this ledger learned of it
(`recordedAt`, by its clock). An event this ledger imported from another one also carries
`firstRecordedAt`: when a ledger first recorded it (see domain/events.py, v2).
"""

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
        entry: dict[str, Any] = {
            "runId": event.originator_id,
            "version": event.originator_version,
            "event": event.command.value,
            "eventType": type(event).__name__,
            "statusBefore": status,
            "statusAfter": after,
            "at": timestamps.to_iso(event.at),
            "recordedAt": timestamps.to_iso(event.timestamp),
        }
        if event.first_recorded_at is not None:
            entry["firstRecordedAt"] = timestamps.to_iso(event.first_recorded_at)
        entry |= {
            "actor": event.actor,
            "reason": event.reason,
            "idempotencyKey": event.idempotency_key,
            **_payload(event),
        }
        yield entry
        status = after


def _payload(event: RunEvent) -> dict[str, Any]:
    """The event's own fields, by their contract names (JSON payloads parsed, exact)."""
    fields = event_fields(event)
    if isinstance(event, RunCreated):  # input sits before cfWorkflowId, as it always has
        linked = fields.pop("cfWorkflowId")
        fields |= {"input": payload.loads(event.input_json), "cfWorkflowId": linked}
    elif isinstance(event, RunCompleted):
        fields["output"] = payload.loads(event.output_json)
    return fields


def event_fields(event: RunEvent) -> dict[str, Any]:
    """The event's own fields but its JSON payloads, by their contract names."""
    if isinstance(event, RunCreated):
        return {
            "workspaceId": event.workspace_id,
            "subjectId": event.subject_id,
            "userId": event.user_id,
            "parentRunId": event.parent_run_id,
            "mode": event.mode,
            "triggeredBy": event.triggered_by,
            "cfWorkflowId": event.cf_workflow_id,
        }
    if isinstance(event, RunFailed):
        return {"error": event.error}
    if isinstance(event, CfWorkflowLinked):
        return {"cfWorkflowId": event.cf_workflow_id}
    return {}
