"""The contract of lifecycle.md against the real application, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import payload, timestamps
from domain.errors import RunLedgerError
from domain.status import RunStatus
from infrastructure.application import Ledger
from projections.fold import to_timings, to_view
from tests.builders import FakeClock, at, command, create


def rejection(ledger: Ledger, data: dict[str, object]) -> str:
    with pytest.raises(RunLedgerError) as caught:
        ledger.submit(data)
    return caught.value.code


def test_a_run_moves_through_its_lifecycle_and_the_view_follows(ledger: Ledger) -> None:
    ledger.submit(create(at=at(0), input={"prompt": "hi"}))
    ledger.submit(command("start", at=at(2)))
    ledger.submit(command("wait", at=at(5), reason="approval"))
    ledger.submit(command("resume", at=at(9)))

    state = ledger.submit(command("complete", at=at(10), output={"answer": 42}))

    view = to_view(state).to_json_dict()
    assert view["status"] == "completed"
    assert view["output"] == {"answer": 42}
    assert (view["startedAt"], view["completedAt"]) == (at(2), at(10))
    assert view["durationMs"] == 8000
    assert to_timings(state).to_json_dict() == {
        "queuedMs": 2000,
        "runningMs": 4000,
        "pausedMs": 0,
        "waitingMs": 4000,
    }
    assert [event.originator_version for event in ledger.history("run_1")] == [1, 2, 3, 4, 5]


def test_the_same_create_twice_makes_one_run(ledger: Ledger) -> None:
    first = ledger.submit(create(at=at(0), input={"n": 1.10}))

    again = ledger.submit(create(at=at(5), idempotencyKey="other", input={"n": 1.10}))

    assert again == first
    assert len(ledger.history("run_1")) == 1


def test_a_different_create_for_an_existing_id_is_a_conflict(ledger: Ledger) -> None:
    ledger.submit(create(at=at(0)))

    code = rejection(ledger, create(at=at(1), subjectId="wf_other"))

    assert code == "conflict"
    assert len(ledger.history("run_1")) == 1


def test_a_keyed_create_without_run_id_makes_one_run_per_workspace_and_key(
    ledger: Ledger,
) -> None:
    first = ledger.submit(create(run_id=None, idempotencyKey="order-7", at=at(0)))
    again = ledger.submit(create(run_id=None, idempotencyKey="order-7", at=at(1)))
    elsewhere = ledger.submit(
        create(run_id=None, idempotencyKey="order-7", workspaceId="ws_2", at=at(1))
    )

    assert again.id == first.id
    assert elsewhere.id != first.id
    assert len(ledger.history(first.id)) == 1


def test_a_create_without_run_id_or_key_makes_a_new_run_each_time(ledger: Ledger) -> None:
    ids = {ledger.submit(create(run_id=None)).id for _ in range(3)}

    assert len(ids) == 3
    assert all(run_id.startswith("run_") and len(run_id) == 30 for run_id in ids)


def test_a_parent_must_exist_in_the_same_workspace(ledger: Ledger) -> None:
    ledger.submit(create("run_parent", at=at(0)))

    child = ledger.submit(create("run_child", parentRunId="run_parent", at=at(1)))
    missing = rejection(ledger, create("run_orphan", parentRunId="run_nope"))
    foreign = rejection(ledger, create("run_x", parentRunId="run_parent", workspaceId="ws_2"))

    assert child.parent_run_id == "run_parent"
    assert (missing, foreign) == ("invalid", "invalid")


def test_a_duplicate_keyed_transition_is_recognised_after_the_run_finished(
    ledger: Ledger,
) -> None:
    ledger.submit(create(at=at(0)))
    ledger.submit(command("start", at=at(1), idempotencyKey="k-start"))
    finished = ledger.submit(command("complete", at=at(2), output=[1, "two"]))

    late = ledger.submit(command("start", at=at(9), actor="retrier", idempotencyKey="k-start"))

    assert late == finished
    assert len(ledger.history("run_1")) == 3


def test_a_key_reused_for_a_different_command_is_a_conflict(ledger: Ledger) -> None:
    ledger.submit(create(at=at(0)))
    ledger.submit(command("start", at=at(1)))
    ledger.submit(command("wait", at=at(2), reason="input", idempotencyKey="k"))

    code = rejection(ledger, command("pause", at=at(3), idempotencyKey="k"))

    assert code == "conflict"
    assert len(ledger.history("run_1")) == 3


def test_the_key_of_a_rejected_command_stays_free(ledger: Ledger) -> None:
    ledger.submit(create(at=at(0)))
    assert rejection(ledger, command("complete", at=at(1), idempotencyKey="k")) == (
        "illegal_transition"
    )

    state = ledger.submit(command("start", at=at(1), idempotencyKey="k"))

    assert state.status is RunStatus.RUNNING


def test_an_event_earlier_than_the_latest_is_out_of_order_and_equal_is_fine(
    ledger: Ledger,
) -> None:
    ledger.submit(create(at=at(10)))

    early = rejection(ledger, command("start", at=at(9.999)))
    state = ledger.submit(command("start", at=at(10)))

    assert early == "out_of_order"
    assert state.started_at == state.created_at


def test_an_at_more_than_five_minutes_ahead_of_the_ledger_clock_is_invalid(
    ledger: Ledger, clock: FakeClock
) -> None:
    ledger.submit(create(at=at(0)))
    clock.now = clock.now.replace(microsecond=0)
    soon = clock.now.timestamp() + 300

    accepted = ledger.submit(command("start", at=_iso(soon)))
    code = rejection(ledger, command("wait", at=_iso(soon + 0.001)))

    assert accepted.status is RunStatus.RUNNING
    assert code == "invalid"


def test_a_command_without_at_takes_the_ledger_clock(ledger: Ledger, clock: FakeClock) -> None:
    ledger.submit(create(at=at(0)))

    state = ledger.submit(command("start"))

    assert state.started_at == clock.now


def test_linking_a_finished_run_moves_only_updated_at(ledger: Ledger) -> None:
    ledger.submit(create(at=at(0)))
    ledger.submit(command("start", at=at(1)))
    done = ledger.submit(command("fail", at=at(3), error="worker lost"))

    linked = ledger.submit(command("linkCfWorkflow", at=at(7), cfWorkflowId="cf_9"))
    again = ledger.submit(command("linkCfWorkflow", at=at(8), cfWorkflowId="cf_9"))
    other = rejection(ledger, command("linkCfWorkflow", at=at(9), cfWorkflowId="cf_10"))

    assert linked.cf_workflow_id == "cf_9"
    assert to_view(linked).to_json_dict()["updatedAt"] == at(7)
    assert (linked.completed_at, to_timings(linked)) == (done.completed_at, to_timings(done))
    assert again == linked
    assert other == "conflict"
    assert len(ledger.history("run_1")) == 4


def test_numbers_and_strings_come_back_exactly_from_the_store(database_url: str) -> None:
    literal = '{"price":1.10,"big":12345678901234567890123,"e":1e5,"s":"é\u2028\U0001f600"}'
    with Ledger(database_url) as writer:
        writer.submit(create(input=payload.loads(literal)))

    with Ledger(database_url) as reader:
        state = reader.state("run_1")

    assert payload.dumps(state.input) == literal


def test_an_unknown_run_is_not_found(ledger: Ledger) -> None:
    assert rejection(ledger, command("start", "run_missing")) == "not_found"


def _iso(seconds: float) -> str:
    return timestamps.to_iso(datetime.fromtimestamp(seconds, UTC))
