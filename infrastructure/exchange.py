"""The export format: one run event a JSON line, versioned, lossless; `export` writes it and
`import` reads it back.

Schema version 1. A file is UTF-8 text, one JSON object a line, each line ended by `\\n`
(lines are split on `\\n` only: a string may hold U+2028). Lines come in the exporting
ledger's global order, so a run's creation comes before its other events.

    key              JSON type        meaning
    schemaVersion    1                this schema; a reader refuses a version it does not know
    position         integer          the event's place in the exporting ledger's global order
                                      (its notification id): increasing, gaps possible
    runId            string           the run
    version          integer >= 1     the event's place in its run: 1 is its creation, then
                                      2, 3, ... with no gaps
    event            string           the command it records: create, start, pause, resume,
                                      wait, complete, fail, cancel, timeOut, linkCfWorkflow
    eventType        string           the event's class: RunCreated, RunStarted, ...
    at               timestamp        when it happened, by the source's clock
    recordedAt       timestamp        when the exporting ledger recorded it, by its clock
    firstRecordedAt  timestamp        when a ledger first recorded it: recordedAt, unless the
                                      exporting ledger imported it (then the source's time)
    actor            string or null   who or what did it
    reason           string or null   why
    idempotencyKey   string or null   the command's key
    then the event's own fields (every key is always written, null included):
      create          workspaceId, subjectId, userId, parentRunId, mode, triggeredBy,
                      cfWorkflowId, input
      complete        output
      fail            error
      linkCfWorkflow  cfWorkflowId

Timestamps are printed as JavaScript's toISOString() prints them (`2026-11-24T05:05:34.120Z`).
`input` and `output` are any JSON, written last and exactly as recorded: `1.10` stays `1.10`.
Any change to this list makes a new schema version; readers of version 1 refuse later ones.

`import` reads the same lines back (infrastructure/import_lines.py).
"""

from __future__ import annotations

from typing import Any

from domain import payload, timestamps
from domain.events import RunCompleted, RunCreated, RunEvent
from projections import history

SCHEMA_VERSION = 1

RECORDING_KEYS = ("schemaVersion", "position", "recordedAt", "firstRecordedAt")
"""What says where and when a ledger recorded the event, rather than what happened."""


# Writing --------------------------------------------------------------------------------------


def to_line(event: RunEvent, position: int) -> str:
    """The event's export line, with its `\\n`."""
    head = payload.dumps(_header(event, position))
    texts = "".join(f',"{key}":{text}' for key, text in _payload_texts(event).items())
    return f"{head[:-1]}{texts}}}\n"


def content(event: RunEvent) -> dict[str, Any]:
    """What the event says happened: its line without the recording keys, payloads as text.
    Two events with the same content are the same event, wherever they were recorded."""
    fields = {k: v for k, v in _header(event, 0).items() if k not in RECORDING_KEYS}
    return fields | _payload_texts(event)


def _header(event: RunEvent, position: int) -> dict[str, Any]:
    return {
        "schemaVersion": SCHEMA_VERSION,
        "position": position,
        "runId": event.originator_id,
        "version": event.originator_version,
        "event": event.command.value,
        "eventType": type(event).__name__,
        "at": timestamps.to_iso(event.at),
        "recordedAt": timestamps.to_iso(event.timestamp),
        "firstRecordedAt": timestamps.to_iso(event.first_recorded),
        "actor": event.actor,
        "reason": event.reason,
        "idempotencyKey": event.idempotency_key,
        **history.event_fields(event),
    }


def _payload_texts(event: RunEvent) -> dict[str, str]:
    """The JSON payloads as the ledger holds them: exact text, spliced into the line as is."""
    if isinstance(event, RunCreated):
        return {"input": event.input_json}
    if isinstance(event, RunCompleted):
        return {"output": event.output_json}
    return {}
