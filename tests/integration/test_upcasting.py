"""Schema evolution: events stored in an older shape are upcast on read (domain/events.py).

The v1 events below are the exact bytes the ledger stored before `first_recorded_at` existed
(commit 889a2b7, recorded at 2026-11-25T05:00:00.250Z), inserted behind the ledger's back
and then read through the current code, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from domain import payload, timestamps
from domain.events import RunCompleted, RunCreated, RunEvent
from domain.status import RunStatus
from infrastructure import export
from infrastructure.application import Ledger
from infrastructure.importer import Importer
from projections import history
from projections.fold import to_view
from tests.builders import FakeClock, at, command, create, insert_stored_event, stored_state

V1_RECORDED_AT = "2026-11-25T05:00:00.250Z"
V1_EVENTS = [
    (
        "domain.events:RunCreated",
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-25T05:00:00.250000+00:00"},'
        b'"at":{"_type_":"datetime_iso","_data_":"2026-11-24T05:00:00+00:00"},"actor":null,'
        b'"reason":null,"idempotency_key":"create-old","originator_topic":"domain.run:Run",'
        b'"workspace_id":"ws_1","subject_id":"wf_checkout","user_id":"user_1",'
        b'"parent_run_id":null,"mode":"async","triggered_by":"user",'
        b'"input_json":"{\\"amount\\":1.10}","cf_workflow_id":null}',
    ),
    (
        "domain.events:RunStarted",
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-25T05:00:00.250000+00:00"},'
        b'"at":{"_type_":"datetime_iso","_data_":"2026-11-24T05:00:01.500000+00:00"},'
        b'"actor":"system","reason":null,"idempotency_key":null}',
    ),
    (
        "domain.events:RunCompleted",
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-25T05:00:00.250000+00:00"},'
        b'"at":{"_type_":"datetime_iso","_data_":"2026-11-24T05:00:09+00:00"},"actor":null,'
        b'"reason":"done","idempotency_key":null,"output_json":"{\\"total\\":1E+5}"}',
    ),
]
"""run_old: created, started by `system`, completed with a reason; exact numbers inside."""


def store_v1_run(ledger: Ledger, versions: int = len(V1_EVENTS)) -> None:
    for version, (topic, state) in enumerate(V1_EVENTS[:versions], start=1):
        insert_stored_event(ledger, "run_old", version, topic, state)


def test_events_stored_in_the_first_shape_are_read_as_the_current_shape(ledger: Ledger) -> None:
    store_v1_run(ledger)

    events = ledger.history("run_old")

    assert [type(event).__name__ for event in events] == [
        "RunCreated",
        "RunStarted",
        "RunCompleted",
    ]
    assert [event.first_recorded_at for event in events] == [None, None, None]
    assert [timestamps.to_iso(event.first_recorded) for event in events] == [V1_RECORDED_AT] * 3
    assert (events[1].actor, events[2].reason) == ("system", "done")
    created, completed = events[0], events[2]
    assert isinstance(created, RunCreated)
    assert isinstance(completed, RunCompleted)
    assert (created.input_json, completed.output_json) == ('{"amount":1.10}', '{"total":1E+5}')


def test_an_old_run_shows_the_same_view_and_history_as_before_the_change(ledger: Ledger) -> None:
    store_v1_run(ledger)

    view = to_view(ledger.state("run_old")).to_json_dict()
    entries = list(history.entries(ledger.history("run_old")))

    assert view["status"] == RunStatus.COMPLETED
    assert payload.dumps(view["input"]) == '{"amount":1.10}'
    assert payload.dumps(view["output"]) == '{"total":1E+5}'
    assert (view["startedAt"], view["durationMs"]) == ("2026-11-24T05:00:01.500Z", 7500)
    assert [entry["recordedAt"] for entry in entries] == [V1_RECORDED_AT] * 3
    assert all("firstRecordedAt" not in entry for entry in entries)


def test_an_old_run_takes_new_commands_and_they_are_stored_in_the_current_shape(
    ledger: Ledger,
) -> None:
    store_v1_run(ledger, versions=2)

    ledger.submit(command("complete", "run_old", at=at(20), output={"ok": True}))

    (_, old_state), (_, new_state) = (stored_state(ledger, "run_old", v) for v in (2, 3))
    old, new = json.loads(old_state), json.loads(new_state)
    assert "class_version" not in old
    assert "first_recorded_at" not in old
    assert (new["class_version"], new["first_recorded_at"]) == (2, None)
    assert [event.originator_version for event in ledger.history("run_old")] == [1, 2, 3]


def test_an_imported_event_keeps_the_time_its_first_ledger_recorded_it(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    store_v1_run(ledger)
    exported = io.BytesIO()
    export.export(ledger, exported)
    with Ledger(f"sqlite:///{tmp_path / 'other.db'}", clock=clock) as other:
        clock.advance(3600)

        Importer(other).run(exported.getvalue().splitlines())

        imported: list[RunEvent] = other.history("run_old")
        assert [timestamps.to_iso(e.first_recorded) for e in imported] == [V1_RECORDED_AT] * 3
        assert all(e.timestamp == clock.now for e in imported)
        _, stored = stored_state(other, "run_old", 1)
        first_recorded = json.loads(stored)["first_recorded_at"]["_data_"]
        assert first_recorded.startswith("2026-11-25T05:00:00.25")


def test_a_new_ledger_writes_every_event_in_the_current_shape(ledger: Ledger) -> None:
    ledger.submit(create(at=at(0)))
    ledger.submit(command("start", at=at(1)))

    states = [json.loads(stored_state(ledger, "run_1", version)[1]) for version in (1, 2)]

    assert [state["class_version"] for state in states] == [2, 2]
    assert [state["first_recorded_at"] for state in states] == [None, None]
