"""The fold from a run's events to its view (the seed's WorkflowRun) and its timings.

Histories are built through the real aggregate, so they are histories the ledger can hold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import pytest
from eventsourcing.application import project_aggregate
from hypothesis import given
from hypothesis import strategies as st

from domain import payload
from domain.run import Run
from projections.fold import (
    RunState,
    fold,
    step,
    to_extended,
    to_timings,
    to_view,
    view_text,
)
from tests import strategies
from tests.builders import SEED_FIELDS, T0, at, command, create, events_from

TIMING_FIELDS = ["queuedMs", "runningMs", "pausedMs", "waitingMs"]

# lifecycle.md: the status each command moves a run to (None: unchanged).
TARGETS = {
    "start": "running",
    "pause": "paused",
    "resume": "running",
    "wait": "waiting",
    "complete": "completed",
    "fail": "failed",
    "cancel": "cancelled",
    "timeOut": "timed_out",
    "linkCfWorkflow": None,
}
OPEN = {"pending", "running", "paused", "waiting"}
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def millis(text: str) -> int:
    """Milliseconds from T0 to an `at` text."""
    return round((datetime.fromisoformat(text) - T0).total_seconds() * 1000)


def view(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return to_view(fold(events_from(lines))).to_json_dict()


def timings(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return to_timings(fold(events_from(lines))).to_json_dict()


def seed_view(**fields: Any) -> dict[str, Any]:
    """The view of a run created by `create()` at at(0) and nothing else, with `fields` changed."""
    defaults: dict[str, Any] = {
        "id": "run_1",
        "workspaceId": "ws_1",
        "subjectId": "wf_checkout",
        "parentRunId": None,
        "status": "pending",
        "mode": "async",
        "input": None,
        "output": None,
        "error": None,
        "triggeredBy": "user",
        "cfWorkflowId": None,
        "durationMs": None,
        "userId": "user_1",
        "startedAt": None,
        "completedAt": None,
        "createdAt": at(0),
        "updatedAt": at(0),
    }
    return defaults | fields


def model(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The view's times and the timings, computed from the commands alone, by lifecycle.md."""
    created = millis(lines[0]["at"])
    status, since, last = "pending", created, created
    spent = {"running": 0, "paused": 0, "waiting": 0}
    started: int | None = None
    completed: int | None = None
    for line in lines[1:]:
        moment = millis(line["at"])
        target = TARGETS[line["command"]] or status
        if target != status:
            if status in spent:
                spent[status] += moment - since
            status, since = target, moment
            if target == "running" and started is None:
                started = moment
            if target not in OPEN:
                completed = moment
        last = moment
    if status in spent:
        spent[status] += last - since
    times = {"status": status, "startedAt": started, "completedAt": completed, "updatedAt": last}
    if started is None:
        return times | {"durationMs": None} | dict.fromkeys(TIMING_FIELDS)
    return times | {
        "durationMs": None if completed is None else completed - started,
        "queuedMs": started - created,
        "runningMs": spent["running"],
        "pausedMs": spent["paused"],
        "waitingMs": spent["waiting"],
    }


# Hand-written histories -----------------------------------------------------------------------


def test_a_new_run_is_pending_with_nothing_but_what_create_gave() -> None:
    lines = [create(at=at(0))]

    shown = view(lines)

    assert shown == seed_view()
    assert timings(lines) == dict.fromkeys(TIMING_FIELDS)


def test_the_view_holds_exactly_the_seeds_17_fields_in_order() -> None:
    lines = [create(at=at(0)), command("start", at=at(1)), command("complete", at=at(2))]

    shown = view(lines)

    assert list(shown) == SEED_FIELDS


def test_a_completed_run_shows_every_field_and_its_timings() -> None:
    given = payload.loads('{"total":1.10,"items":[1e5]}')
    lines = [
        create(
            at=at(0),
            parentRunId="run_0",
            mode="sync",
            triggeredBy="agent",
            input=given,
            cfWorkflowId="cf_1",
        ),
        command("start", at=at(2)),
        command("wait", at=at(5), reason="approval"),
        command("resume", at=at(9)),
        command("pause", at=at(10)),
        command("resume", at=at(12.5)),
        command("complete", at=at(20), output={"ok": True}),
    ]

    shown, spent = view(lines), timings(lines)

    assert shown == seed_view(
        parentRunId="run_0",
        status="completed",
        mode="sync",
        input=given,
        output={"ok": True},
        triggeredBy="agent",
        cfWorkflowId="cf_1",
        durationMs=18_000,
        startedAt=at(2),
        completedAt=at(20),
        updatedAt=at(20),
    )
    assert spent == {"queuedMs": 2000, "runningMs": 11_500, "pausedMs": 2500, "waitingMs": 4000}


def test_the_view_prints_as_the_seeds_json() -> None:
    given, produced = payload.loads('{"total":1.10}'), payload.loads("[3.14159265358979323846]")
    lines = [
        create(at=at(0), input=given),
        command("start", at="2026-11-24T05:00:01.5+00:00"),
        command("complete", at=at(3), output=produced),
    ]

    text = to_view(fold(events_from(lines))).to_json()

    assert text == payload.dumps(
        seed_view(
            status="completed",
            input=given,
            output=produced,
            durationMs=1500,
            startedAt="2026-11-24T05:00:01.500Z",
            completedAt=at(3),
            updatedAt=at(3),
        )
    )
    assert '"total":1.10' in text
    assert "[3.14159265358979323846]" in text


def test_a_run_that_failed_before_starting_has_no_duration_and_no_timings() -> None:
    lines = [create(at=at(0)), command("fail", at=at(3), error="no worker available")]

    shown, spent = view(lines), timings(lines)

    assert shown == seed_view(
        status="failed",
        error="no worker available",
        completedAt=at(3),
        updatedAt=at(3),
    )
    assert spent == dict.fromkeys(TIMING_FIELDS)


def test_a_run_that_failed_after_starting_shows_its_error_and_no_output() -> None:
    lines = [
        create(at=at(0)),
        command("start", at=at(1)),
        command("fail", at=at(4), error="card declined"),
    ]

    shown = view(lines)

    assert shown == seed_view(
        status="failed",
        error="card declined",
        durationMs=3000,
        startedAt=at(1),
        completedAt=at(4),
        updatedAt=at(4),
    )


@pytest.mark.parametrize(("name", "status"), [("cancel", "cancelled"), ("timeOut", "timed_out")])
def test_a_run_ended_while_paused_counts_the_pause_in_its_duration(name: str, status: str) -> None:
    lines = [
        create(at=at(0)),
        command("start", at=at(1)),
        command("pause", at=at(4)),
        command(name, at=at(6), reason="gave up"),
    ]

    shown, spent = view(lines), timings(lines)

    assert shown == seed_view(
        status=status, durationMs=5000, startedAt=at(1), completedAt=at(6), updatedAt=at(6)
    )
    assert spent == {"queuedMs": 1000, "runningMs": 3000, "pausedMs": 2000, "waitingMs": 0}


def test_an_open_run_has_no_duration_and_times_its_current_status_up_to_updated_at() -> None:
    lines = [
        create(at=at(0)),
        command("start", at=at(1)),
        command("wait", at=at(3)),
        command("linkCfWorkflow", at=at(8), cfWorkflowId="cf_7"),
    ]

    shown, spent = view(lines), timings(lines)

    assert shown == seed_view(
        status="waiting", cfWorkflowId="cf_7", startedAt=at(1), updatedAt=at(8)
    )
    assert spent == {"queuedMs": 1000, "runningMs": 2000, "pausedMs": 0, "waitingMs": 5000}


def test_linking_a_finished_run_moves_only_updated_at_and_the_workflow_id() -> None:
    finished = [create(at=at(0)), command("start", at=at(1)), command("complete", at=at(4))]
    linked = [*finished, command("linkCfWorkflow", at=at(60), cfWorkflowId="cf_9")]

    before, after = to_extended(fold(events_from(finished))), to_extended(fold(events_from(linked)))

    assert after.run.to_json_dict() == before.run.to_json_dict() | {
        "updatedAt": at(60),
        "cfWorkflowId": "cf_9",
    }
    assert after.run.completed_at == before.run.completed_at
    assert after.run.duration_ms == before.run.duration_ms == 3000
    assert after.timings == before.timings
    assert after.version == before.version + 1


def test_a_queued_run_counts_the_time_before_it_started() -> None:
    lines = [create(at=at(0)), command("start", at=at(90.25))]

    spent = timings(lines)

    assert spent == {"queuedMs": 90_250, "runningMs": 0, "pausedMs": 0, "waitingMs": 0}


def test_the_extended_view_wraps_the_view_with_timings_and_version() -> None:
    lines = [create(at=at(0)), command("start", at=at(1)), command("pause", at=at(2))]

    extended = to_extended(fold(events_from(lines))).to_json_dict()

    assert list(extended) == ["run", "timings", "version"]
    assert list(extended["run"]) == SEED_FIELDS
    assert list(extended["timings"]) == TIMING_FIELDS
    assert extended["version"] == 3


def test_a_stream_without_its_creation_event_cannot_be_folded() -> None:
    events = events_from([create(at=at(0)), command("start", at=at(1))])

    with pytest.raises(ValueError, match="no creation event"):
        fold(events[1:])


def test_an_empty_stream_cannot_be_folded() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        fold([])


def test_folding_step_by_step_gives_each_prefix_its_own_state() -> None:
    lines = [create(at=at(0)), command("start", at=at(1)), command("complete", at=at(2))]
    events = events_from(lines)

    states: list[RunState] = []
    for event in events:
        states.append(step(states[-1] if states else None, event))

    assert [state.status for state in states] == ["pending", "running", "completed"]
    assert [state.version for state in states] == [1, 2, 3]
    assert states[-1] == fold(events)


# Laws over random valid histories ------------------------------------------------------------


@given(strategies.lifecycles(started=True, finished=True))
def test_a_finished_run_spent_its_whole_duration_running_paused_or_waiting(
    lines: list[dict[str, Any]],
) -> None:
    ending = next(line for line in lines[1:] if TARGETS[line["command"]] in TERMINAL)

    state = fold(events_from(lines))

    shown, spent = to_view(state), to_timings(state)
    assert shown.duration_ms == millis(ending["at"]) - millis(lines[1]["at"])
    assert spent.running_ms is not None
    assert spent.paused_ms is not None
    assert spent.waiting_ms is not None
    assert spent.running_ms + spent.paused_ms + spent.waiting_ms == shown.duration_ms


@given(strategies.lifecycles(started=True, finished=False))
def test_an_open_run_spent_the_time_since_it_started_running_paused_or_waiting(
    lines: list[dict[str, Any]],
) -> None:
    elapsed = millis(lines[-1]["at"]) - millis(lines[1]["at"])

    state = fold(events_from(lines))

    shown, spent = to_view(state), to_timings(state)
    assert shown.duration_ms is None
    assert shown.completed_at is None
    assert spent.running_ms is not None
    assert spent.paused_ms is not None
    assert spent.waiting_ms is not None
    assert spent.running_ms + spent.paused_ms + spent.waiting_ms == elapsed


@given(strategies.lifecycles())
def test_the_fold_agrees_with_a_model_of_the_contract(lines: list[dict[str, Any]]) -> None:
    expected = model(lines)

    state = fold(events_from(lines))

    shown, spent = to_view(state).to_json_dict(), to_timings(state).to_json_dict()
    moments = ("startedAt", "completedAt", "updatedAt")
    assert {key: shown[key] and millis(shown[key]) for key in moments} == {
        key: expected[key] for key in moments
    }
    assert (shown["status"], shown["durationMs"]) == (expected["status"], expected["durationMs"])
    assert spent == {key: expected[key] for key in TIMING_FIELDS}


@given(strategies.lifecycles())
def test_only_a_failed_run_has_an_error_and_only_a_completed_run_an_output(
    lines: list[dict[str, Any]],
) -> None:
    outputs = [line.get("output") for line in lines if line["command"] == "complete"]
    errors = [line["error"] for line in lines if line["command"] == "fail"]

    shown = to_view(fold(events_from(lines)))

    assert shown.error == (errors[0] if errors else None)
    assert payload.same(shown.output, outputs[0] if outputs else None)


@given(strategies.lifecycles())
def test_the_fold_agrees_with_the_aggregate_it_was_built_from(
    lines: list[dict[str, Any]],
) -> None:
    events = events_from(lines)

    state, run = fold(events), cast(Run, project_aggregate(None, events))

    assert state.status == run.status
    assert state.version == run.version == len(lines)
    assert state.cf_workflow_id == run.cf_workflow_id


@given(
    strategies.interleaved_lifecycles(max_runs=1),
    st.booleans(),
    st.booleans(),
    st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12).filter(str.strip),
)
def test_the_view_written_out_directly_is_the_models_to_the_byte(
    lines: list[dict[str, Any]], with_parent: bool, linked_at_create: bool, error: str
) -> None:
    extra = {"parentRunId": "run_parent"} if with_parent else {}
    if linked_at_create and not any(line["command"] == "linkCfWorkflow" for line in lines):
        extra["cfWorkflowId"] = "cf_created"
    lines = [{**lines[0], **extra}, *lines[1:]]
    lines = [{**line, "error": error} if line["command"] == "fail" else line for line in lines]
    for events in (events_from(lines[:cut]) for cut in range(1, len(lines) + 1)):
        state = fold(events)

        direct, modelled = view_text(state), to_view(state).to_json_dict()

        assert direct == payload.dumps(modelled)
