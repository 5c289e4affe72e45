"""The run aggregate's rules, driven without a database: the transition table, exhaustively,
and what every accepted or rejected transition does to the run's events.

The contract's tables are written out here by hand (from shared/design/lifecycle.md), so that
a wrong edit of `domain.status.TRANSITIONS` fails these tests instead of redefining them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, cast

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.domain import CanInitAggregate
from hypothesis import given
from hypothesis import strategies as st

from domain import timestamps
from domain.commands import CreateRun
from domain.errors import Conflict, IllegalTransition, InvalidCommand, OutOfOrder
from domain.events import (
    CfWorkflowLinked,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunEvent,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunTimedOut,
    RunWaited,
)
from domain.run import Run
from domain.status import TERMINAL_STATUSES, TRANSITIONS, Command, RunStatus
from projections.fold import fold
from tests.builders import (
    ROUTES,
    T0,
    FakeClock,
    at,
    command,
    create_command,
    parsed_transition,
    run_command,
    run_from,
    run_in,
)

NOW = FakeClock().now

# lifecycle.md, "Statuses": status -> kind.
CONTRACT_STATUSES = {
    "pending": "open",
    "running": "open",
    "paused": "open",
    "waiting": "open",
    "completed": "terminal",
    "failed": "terminal",
    "cancelled": "terminal",
    "timed_out": "terminal",
}
_OPEN = frozenset({"pending", "running", "paused", "waiting"})
_ANY = frozenset(CONTRACT_STATUSES)

# lifecycle.md, "Commands, transitions, events": apply name -> (CLI name, allowed from, to);
# `to` None means the status is unchanged.
CONTRACT_TRANSITIONS: dict[str, tuple[str, frozenset[str], str | None]] = {
    "start": ("start", frozenset({"pending"}), "running"),
    "pause": ("pause", frozenset({"running", "waiting"}), "paused"),
    "resume": ("resume", frozenset({"paused", "waiting"}), "running"),
    "wait": ("wait", frozenset({"running"}), "waiting"),
    "complete": ("complete", frozenset({"running"}), "completed"),
    "fail": ("fail", _OPEN, "failed"),
    "cancel": ("cancel", _OPEN, "cancelled"),
    "timeOut": ("time-out", _OPEN, "timed_out"),
    "linkCfWorkflow": ("link-cf-workflow", _ANY, None),
}

EVENT_CLASSES: dict[str, type[RunEvent]] = {
    "start": RunStarted,
    "pause": RunPaused,
    "resume": RunResumed,
    "wait": RunWaited,
    "complete": RunCompleted,
    "fail": RunFailed,
    "cancel": RunCancelled,
    "timeOut": RunTimedOut,
    "linkCfWorkflow": CfWorkflowLinked,
}

ALLOWED = [
    pytest.param(status, name, id=f"{name}-from-{status}")
    for status in CONTRACT_STATUSES
    for name, (_, allowed_from, _) in CONTRACT_TRANSITIONS.items()
    if status in allowed_from
]
DISALLOWED = [
    pytest.param(status, name, id=f"{name}-from-{status}")
    for status in CONTRACT_STATUSES
    for name, (_, allowed_from, _) in CONTRACT_TRANSITIONS.items()
    if status not in allowed_from
]


def pending_events(run: Run) -> list[RunEvent]:
    return cast(list[RunEvent], list(run.pending_events))


def replay(events: list[RunEvent]) -> Run:
    return cast(Run, project_aggregate(None, events))


# The table --------------------------------------------------------------------------------


def test_the_statuses_and_their_kinds_are_the_contracts() -> None:
    kinds = {status.value: "terminal" if status.is_terminal else "open" for status in RunStatus}

    assert kinds == CONTRACT_STATUSES


def test_the_transition_table_is_the_contracts_table() -> None:
    table = {
        command.value: (
            command.cli_name,
            frozenset(status.value for status in transition.allowed_from),
            None if transition.to is None else transition.to.value,
        )
        for command, transition in TRANSITIONS.items()
    }

    assert table == CONTRACT_TRANSITIONS


def test_create_is_the_only_command_outside_the_transition_table() -> None:
    outside = set(Command) - set(TRANSITIONS)

    assert outside == {Command.CREATE}


def test_every_status_has_a_route_that_reaches_it() -> None:
    reached = {status: run_in(status).status for status in RunStatus}

    assert reached == {status: status for status in RunStatus}


# Every (status, command) pair -------------------------------------------------------------


@pytest.mark.parametrize(("status", "name"), ALLOWED)
def test_an_allowed_transition_appends_one_event_and_moves_to_the_contracts_status(
    status: str, name: str
) -> None:
    run = run_in(RunStatus(status))
    before = pending_events(run)
    target = CONTRACT_TRANSITIONS[name][2] or status

    appended = run.execute(run_command(name, at=at(10)), NOW)

    events = pending_events(run)
    new = events[len(before) :]
    assert appended is True
    assert events[: len(before)] == before
    assert [type(event) for event in new] == [EVENT_CLASSES[name]]
    assert new[0].originator_version == len(before) + 1
    assert run.status == target
    assert replay(events).status == target
    assert fold(events).status == target


@pytest.mark.parametrize(("status", "name"), DISALLOWED)
def test_a_disallowed_transition_is_rejected_naming_the_command_and_the_status(
    status: str, name: str
) -> None:
    run = run_in(RunStatus(status))
    before = pending_events(run)

    with pytest.raises(IllegalTransition) as rejection:
        run.execute(run_command(name, at=at(10)), NOW)

    assert rejection.value.code == "illegal_transition"
    assert re.search(rf"\b{name}\b", rejection.value.message)
    assert re.search(rf"\b{status}\b", rejection.value.message)
    assert pending_events(run) == before
    assert run.status == status


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_terminal_run_rejects_every_transition_but_a_link(status: RunStatus) -> None:
    rejected = set()

    for name in CONTRACT_TRANSITIONS:
        try:
            run_in(status).execute(run_command(name, at=at(10)), NOW)
        except IllegalTransition:
            rejected.add(name)

    assert rejected == set(CONTRACT_TRANSITIONS) - {"linkCfWorkflow"}


@pytest.mark.parametrize("status", list(RunStatus))
def test_a_replayed_run_is_in_the_status_and_version_of_the_original(
    status: RunStatus,
) -> None:
    run = run_in(status)

    replayed = replay(pending_events(run))

    assert replayed.status == run.status == status
    assert replayed.version == run.version == len(ROUTES[status]) + 1


# Rejections append nothing ------------------------------------------------------------------

# (commands that bring the run to where the rejected one is tried, the rejected command,
#  the rejection expected); the run starts created at at(0) and started at at(1).
REJECTIONS: list[Any] = [
    pytest.param([], command("complete", at=at(0.5)), OutOfOrder, id="out_of_order"),
    pytest.param([], command("start", at=at(2)), IllegalTransition, id="illegal_transition"),
    pytest.param(
        [command("cancel", at=at(2))],
        command("resume", at=at(3), idempotencyKey="late"),
        IllegalTransition,
        id="illegal_transition-from-terminal",
    ),
    pytest.param(
        [command("pause", at=at(2), idempotencyKey="k")],
        command("resume", at=at(3), idempotencyKey="k"),
        Conflict,
        id="conflict-idempotency-key",
    ),
    pytest.param(
        [command("linkCfWorkflow", at=at(2), cfWorkflowId="cf_1")],
        command("linkCfWorkflow", at=at(3), cfWorkflowId="cf_2"),
        Conflict,
        id="conflict-link",
    ),
    pytest.param(
        [],
        command("pause", at=timestamps.to_iso(NOW + timedelta(minutes=5, milliseconds=1))),
        InvalidCommand,
        id="invalid-far-future",
    ),
]


@pytest.mark.parametrize(("history", "rejected", "error"), REJECTIONS)
def test_a_rejected_command_appends_nothing_and_leaves_the_run_as_it_was(
    history: list[dict[str, Any]], rejected: dict[str, Any], error: type[Exception]
) -> None:
    run = run_in(RunStatus.RUNNING)
    for line in history:
        run.execute(parsed_transition(line), NOW)
    before = pending_events(run)
    status, keys = run.status, dict(run.keys)

    with pytest.raises(error):
        run.execute(parsed_transition(rejected), NOW)

    assert pending_events(run) == before
    assert (run.status, run.keys, run.last_at) == (status, keys, before[-1].at)


# Order ------------------------------------------------------------------------------------


def test_an_at_earlier_than_the_latest_event_is_out_of_order() -> None:
    run = run_in(RunStatus.RUNNING)
    latest = run.last_at

    with pytest.raises(OutOfOrder) as rejection:
        run.execute(
            run_command("pause", at=timestamps.to_iso(latest - timedelta(milliseconds=1))), NOW
        )

    assert rejection.value.code == "out_of_order"
    assert timestamps.to_iso(latest) in rejection.value.message


def test_an_at_equal_to_the_latest_event_is_in_order() -> None:
    run = run_in(RunStatus.RUNNING)

    appended = run.execute(run_command("pause", at=timestamps.to_iso(run.last_at)), NOW)

    assert appended is True
    assert run.status == RunStatus.PAUSED


def test_a_link_counts_as_the_latest_event_for_ordering() -> None:
    run = run_in(RunStatus.RUNNING)
    run.execute(run_command("linkCfWorkflow", at=at(5)), NOW)

    with pytest.raises(OutOfOrder):
        run.execute(run_command("pause", at=at(4)), NOW)


def test_a_command_without_at_is_stamped_by_the_ledgers_clock() -> None:
    run = run_in(RunStatus.RUNNING)

    run.execute(run_command("pause"), NOW)

    assert pending_events(run)[-1].at == NOW


# The ledger's clock ---------------------------------------------------------------------------


def test_an_at_up_to_five_minutes_ahead_of_the_ledgers_clock_is_accepted() -> None:
    run = run_in(RunStatus.RUNNING)
    edge = NOW + timedelta(minutes=5)

    run.execute(run_command("pause", at=timestamps.to_iso(edge)), NOW)

    assert pending_events(run)[-1].at == edge


def test_an_at_more_than_five_minutes_ahead_of_the_ledgers_clock_is_invalid() -> None:
    run = run_in(RunStatus.RUNNING)
    before = pending_events(run)
    beyond = timestamps.to_iso(NOW + timedelta(minutes=5, milliseconds=1))

    with pytest.raises(InvalidCommand) as rejection:
        run.execute(run_command("pause", at=beyond), NOW)

    assert rejection.value.code == "invalid"
    assert beyond in rejection.value.message
    assert pending_events(run) == before


def test_a_create_more_than_five_minutes_ahead_of_the_ledgers_clock_is_invalid() -> None:
    beyond = NOW + timedelta(minutes=5, milliseconds=1)

    with pytest.raises(InvalidCommand) as rejection:
        Run.create("run_1", create_command(), beyond, NOW)

    assert rejection.value.code == "invalid"


# Idempotency ----------------------------------------------------------------------------------

# (the first keyed command, the same command as sent again: other `at` and `actor`), both
# tried on a running run.
DUPLICATES: list[Any] = [
    pytest.param(
        command("pause", reason="lunch"),
        command("pause", reason="lunch", actor="agent_2"),
        id="pause",
    ),
    pytest.param(
        command("complete", output={"a": 1, "b": [True, None]}),
        command("complete", output={"b": [True, None], "a": 1.0}, actor="agent_2"),
        id="complete-same-output-as-json",
    ),
    pytest.param(command("complete"), command("complete", output=None), id="complete-null"),
    pytest.param(command("fail", error="boom"), command("fail", error="boom"), id="fail"),
    pytest.param(
        command("linkCfWorkflow", cfWorkflowId="cf_1"),
        command("linkCfWorkflow", cfWorkflowId="cf_1"),
        id="link",
    ),
]


@pytest.mark.parametrize(("first", "again"), DUPLICATES)
def test_the_same_keyed_command_again_returns_false_and_appends_nothing(
    first: dict[str, Any], again: dict[str, Any]
) -> None:
    run = run_in(RunStatus.RUNNING)
    run.execute(parsed_transition({**first, "at": at(5), "idempotencyKey": "k"}), NOW)
    before = pending_events(run)

    appended = run.execute(parsed_transition({**again, "at": at(9), "idempotencyKey": "k"}), NOW)

    assert appended is False
    assert pending_events(run) == before


def test_a_duplicate_is_recognised_after_the_run_finished() -> None:
    run = run_in(RunStatus.PENDING)
    run.execute(run_command("start", at=at(1), idempotencyKey="start-1"), NOW)
    run.execute(run_command("complete", at=at(2)), NOW)
    before = pending_events(run)

    appended = run.execute(run_command("start", at=at(3), idempotencyKey="start-1"), NOW)

    assert appended is False
    assert pending_events(run) == before
    assert run.status == RunStatus.COMPLETED


def test_a_late_duplicate_with_an_earlier_at_is_a_duplicate_not_out_of_order() -> None:
    run = run_in(RunStatus.RUNNING)
    run.execute(run_command("pause", at=at(5), idempotencyKey="k"), NOW)
    run.execute(run_command("resume", at=at(6)), NOW)
    before = pending_events(run)

    appended = run.execute(run_command("pause", at=at(1), idempotencyKey="k"), NOW)

    assert appended is False
    assert pending_events(run) == before


def test_a_replayed_run_still_recognises_its_duplicates() -> None:
    run = run_in(RunStatus.RUNNING)
    run.execute(run_command("pause", at=at(5), idempotencyKey="k"), NOW)
    replayed = replay(pending_events(run))

    appended = replayed.execute(run_command("pause", at=at(6), idempotencyKey="k"), NOW)

    assert appended is False
    assert replayed.pending_events == []


# (the first keyed command, a different command with the same key, what its conflict names);
# both on a running run.
KEY_CONFLICTS: list[Any] = [
    pytest.param(
        command("pause"), command("wait"), "by a pause (version 3), not a wait", id="kind"
    ),
    pytest.param(
        command("complete", output={"a": 1}),
        command("complete", output={"a": 2}),
        "with a different output",
        id="output",
    ),
    pytest.param(
        command("complete", output=True),
        command("complete", output=1),
        "with a different output",
        id="output-true-1",
    ),
    pytest.param(
        command("fail", error="boom"), command("fail", error="bang"), "different error", id="error"
    ),
    pytest.param(
        command("pause", reason="a"), command("pause", reason="b"), "different reason", id="reason"
    ),
    pytest.param(
        command("pause"), command("pause", reason="b"), "different reason", id="reason-added"
    ),
    pytest.param(
        command("fail", error="boom", reason="a"),
        command("fail", error="bang", reason="b"),
        "by a fail (version 3), with a different error, reason",
        id="error-and-reason",
    ),
    pytest.param(
        command("linkCfWorkflow", cfWorkflowId="cf_1"),
        command("linkCfWorkflow", cfWorkflowId="cf_2"),
        "with a different cfWorkflowId",
        id="cfWorkflowId",
    ),
]


@pytest.mark.parametrize(("first", "different", "named"), KEY_CONFLICTS)
def test_a_key_reused_for_a_different_command_is_a_conflict_that_names_the_difference(
    first: dict[str, Any], different: dict[str, Any], named: str
) -> None:
    run = run_in(RunStatus.RUNNING)
    run.execute(parsed_transition({**first, "at": at(5), "idempotencyKey": "k"}), NOW)
    before = pending_events(run)

    with pytest.raises(Conflict) as rejection:
        run.execute(parsed_transition({**different, "at": at(6), "idempotencyKey": "k"}), NOW)

    assert rejection.value.code == "conflict"
    assert "'k'" in rejection.value.message
    assert named in rejection.value.message
    assert pending_events(run) == before


@pytest.mark.parametrize(
    "rejected",
    [
        pytest.param(command("start", at=at(5)), id="illegal"),
        pytest.param(command("pause", at=at(0.5)), id="out-of-order"),
        pytest.param(
            command("pause", at=timestamps.to_iso(NOW + timedelta(minutes=6))), id="far-future"
        ),
    ],
)
def test_the_key_of_a_rejected_command_stays_free(rejected: dict[str, Any]) -> None:
    run = run_in(RunStatus.RUNNING)
    with pytest.raises((IllegalTransition, OutOfOrder, InvalidCommand)):
        run.execute(parsed_transition({**rejected, "idempotencyKey": "k"}), NOW)

    appended = run.execute(run_command("wait", at=at(6), idempotencyKey="k"), NOW)

    assert appended is True
    assert run.status == RunStatus.WAITING


# Linking a Cloudflare workflow ------------------------------------------------------------------


def test_linking_the_same_workflow_again_is_a_no_op() -> None:
    run = run_in(RunStatus.RUNNING)
    run.execute(run_command("linkCfWorkflow", at=at(5), cfWorkflowId="cf_1"), NOW)
    before = pending_events(run)

    appended = run.execute(run_command("linkCfWorkflow", at=at(6), cfWorkflowId="cf_1"), NOW)

    assert appended is False
    assert pending_events(run) == before


def test_linking_the_workflow_given_at_create_is_a_no_op() -> None:
    run = run_from(create_command(at=at(0), cfWorkflowId="cf_1"))
    before = pending_events(run)

    appended = run.execute(run_command("linkCfWorkflow", at=at(5), cfWorkflowId="cf_1"), NOW)

    assert appended is False
    assert pending_events(run) == before


@pytest.mark.parametrize("linked_at_create", [False, True])
def test_linking_a_different_workflow_is_a_conflict(linked_at_create: bool) -> None:
    if linked_at_create:
        run = run_from(create_command(at=at(0), cfWorkflowId="cf_1"))
    else:
        run = run_in(RunStatus.PENDING)
        run.execute(run_command("linkCfWorkflow", at=at(1), cfWorkflowId="cf_1"), NOW)
    before = pending_events(run)

    with pytest.raises(Conflict) as rejection:
        run.execute(run_command("linkCfWorkflow", at=at(5), cfWorkflowId="cf_2"), NOW)

    assert rejection.value.code == "conflict"
    assert "cf_1" in rejection.value.message
    assert "cf_2" in rejection.value.message
    assert pending_events(run) == before


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_linking_a_finished_run_appends_its_event_and_keeps_the_status(
    status: RunStatus,
) -> None:
    run = run_in(status)
    before = pending_events(run)

    appended = run.execute(run_command("linkCfWorkflow", at=at(10), cfWorkflowId="cf_9"), NOW)

    assert appended is True
    assert [type(event) for event in pending_events(run)[len(before) :]] == [CfWorkflowLinked]
    assert run.status == status
    assert run.cf_workflow_id == "cf_9"


# Creating ---------------------------------------------------------------------------------------


def test_a_create_with_the_defaults_spelled_out_describes_the_same_run() -> None:
    run = run_from(create_command(at=at(0), idempotencyKey="c1"))

    run.check_same_create(
        create_command(
            at=at(7),
            idempotencyKey="c2",
            mode="async",
            triggeredBy="user",
            input=None,
        )
    )

    assert run.status == RunStatus.PENDING


def test_a_create_with_the_same_input_as_json_describes_the_same_run() -> None:
    run = run_from(create_command(at=at(0), input={"a": 1, "b": [1.5, "x"]}))

    run.check_same_create(create_command(input={"b": [1.5, "x"], "a": 1.0}))

    assert run.status == RunStatus.PENDING


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("workspaceId", "ws_2"),
        ("subjectId", "wf_other"),
        ("userId", "user_2"),
        ("parentRunId", "run_0"),
        ("mode", "sync"),
        ("triggeredBy", "agent"),
        ("input", {"a": 1}),
        ("cfWorkflowId", "cf_1"),
    ],
)
def test_a_create_for_an_existing_id_describing_another_run_is_a_conflict(
    field: str, value: Any
) -> None:
    run = run_from(create_command(at=at(0)))

    with pytest.raises(Conflict) as rejection:
        run.check_same_create(create_command(**{field: value}))

    assert rejection.value.code == "conflict"
    assert field in rejection.value.message


@given(
    st.builds(
        create_command,
        run_id=st.just("run_1"),
        idempotencyKey=st.one_of(st.none(), st.just("key-1")),
        parentRunId=st.one_of(st.none(), st.just("run_0")),
        cfWorkflowId=st.one_of(st.none(), st.just("cf_1")),
        input=st.one_of(st.none(), st.dictionaries(st.sampled_from("abc"), st.integers())),
    )
)
def test_a_run_is_created_as_the_librarys_create_and_mutate_would_create_it(
    command: CreateRun,
) -> None:
    """Run.create and RunCreated.mutate skip the library's introspection (domain/run.py,
    domain/events.py): the run and the event are still exactly the library's."""
    run = Run.create("run_1", command, T0, T0 + timedelta(seconds=1))
    event = cast(RunCreated, run.collect_events()[0])
    library = Run._create(
        RunCreated, id="run_1", **{k: v for k, v in vars(event).items() if k != "originator_id"}
    )
    (library_event,) = library.collect_events()
    assert vars(library_event) == vars(event)
    assert vars(library) == vars(run)
    assert vars(CanInitAggregate.mutate(event, None)) == vars(event.mutate(None))
