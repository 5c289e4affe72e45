"""The `workflow_runs` read model in process, on SQLite and PostgreSQL: the projector's
positions, lag, read-your-writes, poison events and dead letters, rebuild and verify."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from domain import payload
from infrastructure import readmodel
from infrastructure.application import Ledger
from projections.projector import ProjectionError
from projections.readmodel import COLUMNS, RunsView
from projections.verify import Disagreement, verify
from tests.builders import (
    FakeClock,
    at,
    behind_the_ledgers_back,
    command,
    create,
    differing_rows,
    insert_stored_event,
    opened_view,
    replayed_rows,
    stored_state,
)

RUN_IDS = ("run_1", "run_2", "run_3")
TIMEOUT_SECONDS = 20.0


def three_runs(ledger: Ledger) -> int:
    """Records a completed, a running and a pending run; returns the events recorded."""
    sent = [
        create("run_1", at=at(0), input={"prompt": "hi", "n": 1}),
        create("run_2", at=at(1)),
        command("start", "run_1", at=at(2)),
        command("start", "run_2", at=at(3)),
        command("complete", "run_1", at=at(5), output={"ok": True}),
        create("run_3", at=at(6)),
    ]
    for data in sent:
        ledger.submit(data)
    return len(sent)


def head(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


def differing(ledger: Ledger, view: RunsView) -> dict[str, list[tuple[str, Any, Any]]]:
    """The columns where the rows differ from the fold of their runs' events, by run."""
    return differing_rows(view.rows(RUN_IDS), replayed_rows(ledger, RUN_IDS))


def disagreements(ledger: Ledger, view: RunsView) -> list[Disagreement]:
    return list(verify(view, ledger.mapper, view.event_run_ids))


def set_column(ledger: Ledger, run_id: str, column: str, value: object) -> None:
    """Corrupts one cell of the live table by hand."""
    behind_the_ledgers_back(
        ledger.database.url, f"UPDATE workflow_runs SET {column} = %s WHERE id = %s", value, run_id
    )


@pytest.fixture
def view(ledger: Ledger) -> Iterator[RunsView]:
    with opened_view(ledger) as opened:
        yield opened


# Positions ---------------------------------------------------------------------------------


def test_projecting_twice_applies_nothing_the_second_time(ledger: Ledger, view: RunsView) -> None:
    recorded = three_runs(ledger)
    first = readmodel.projector(ledger, view).run()
    rows, position = view.rows(RUN_IDS), view.position()

    second = readmodel.projector(ledger, view).run()

    assert (first, second) == (recorded, 0)
    assert position == view.position() == head(ledger)
    assert view.rows(RUN_IDS) == rows


def test_the_rows_equal_the_fold_of_each_runs_events(ledger: Ledger, view: RunsView) -> None:
    three_runs(ledger)

    readmodel.projector(ledger, view, batch_size=2).run()

    assert differing(ledger, view) == {}
    assert disagreements(ledger, view) == []


def test_projecting_up_to_a_position_stops_there(ledger: Ledger, view: RunsView) -> None:
    three_runs(ledger)

    applied = readmodel.projector(ledger, view, batch_size=2).run(until=3)

    rows = view.rows(RUN_IDS)
    assert applied == view.position() == 3
    assert (rows["run_1"]["status"], rows["run_1"]["version"]) == ("running", 2)
    assert (rows["run_2"]["status"], rows["run_2"]["version"]) == ("pending", 1)
    assert "run_3" not in rows


def test_a_batch_at_a_position_already_applied_is_refused_and_changes_no_row(
    ledger: Ledger, view: RunsView
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    rows = view.rows(RUN_IDS)
    state = view.states(["run_2"])["run_2"]
    newer = state._replace(error="written twice", version=state.version + 1)

    with pytest.raises(IntegrityError):
        view.write([newer], Tracking(view.application_name, view.position()))

    assert view.rows(RUN_IDS) == rows


def indexes_of_the_live_table(ledger: Ledger) -> int:
    if ledger.database.backend == "sqlite":
        query = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = %s"
    else:
        query = "SELECT count(*) FROM pg_indexes WHERE tablename = %s"
    return int(behind_the_ledgers_back(ledger.database.url, query, "workflow_runs")[0][0])


def test_opening_the_read_model_again_changes_nothing_in_its_tables(
    ledger: Ledger, view: RunsView
) -> None:
    indexes = indexes_of_the_live_table(ledger)

    with opened_view(ledger), opened_view(ledger):
        pass

    assert indexes_of_the_live_table(ledger) == indexes


# Lag and read-your-writes ------------------------------------------------------------------


def test_lag_counts_the_events_and_the_seconds_the_read_model_is_behind(
    database_url: str,
) -> None:
    an_hour_ago = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    with Ledger(database_url, clock=an_hour_ago) as ledger, opened_view(ledger) as view:
        recorded = three_runs(ledger)
        before = readmodel.lag(ledger, view).to_json_dict()

        readmodel.projector(ledger, view).run()

        after = readmodel.lag(ledger, view).to_json_dict()
    assert before["behindEvents"] == recorded
    assert 3600 <= before["behindSeconds"] < 3600 + 600
    assert before["deadLetters"] == 0
    assert after == {
        "position": recorded,
        "head": recorded,
        "behindEvents": 0,
        "behindSeconds": 0.0,
        "deadLetters": 0,
    }


def test_a_writer_reads_its_own_writes_once_a_follower_has_applied_them(
    database_url: str, ledger: Ledger, view: RunsView
) -> None:
    ready, stop, failures = threading.Event(), threading.Event(), list[BaseException]()

    def follow() -> None:
        try:
            with Ledger(database_url) as own, opened_view(own) as followed:
                ready.set()
                readmodel.projector(own, followed).run(follow=True, stop=stop)
        except BaseException as error:
            failures.append(error)
            ready.set()

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        assert ready.wait(TIMEOUT_SECONDS)
        three_runs(ledger)
        ledger.submit(command("wait", "run_2", at=at(7), reason="approval"))

        view.wait_for(head(ledger), timeout=TIMEOUT_SECONDS)

        assert view.rows(["run_2"])["run_2"]["status"] == "waiting"
        assert differing(ledger, view) == {}
    finally:
        stop.set()
        follower.join(timeout=TIMEOUT_SECONDS)
    assert not follower.is_alive()
    assert failures == []


def test_waiting_for_a_position_nobody_projects_times_out(ledger: Ledger, view: RunsView) -> None:
    three_runs(ledger)

    with pytest.raises(TimeoutError):
        view.wait_for(head(ledger), timeout=0.3)


def test_waiting_for_position_zero_returns_at_once_on_an_empty_ledger(
    ledger: Ledger, view: RunsView
) -> None:
    readmodel.projector(ledger, view).run()

    view.wait_for(head(ledger), timeout=1.0)

    assert view.position() == head(ledger) == 0


# Poison events and dead letters ------------------------------------------------------------


def poison(ledger: Ledger, kind: str) -> tuple[int, str]:
    """Inserts an event that cannot be applied; returns its position and run id."""
    topic, started = stored_state(ledger, "run_1", 2)
    if kind == "a start of a run never created":
        return insert_stored_event(ledger, "run_ghost", 1, topic, started), "run_ghost"
    if kind == "a state that is not JSON":
        return insert_stored_event(ledger, "run_garbage", 1, topic, b"{not json"), "run_garbage"
    if kind == "an unknown event class":
        unknown = "domain.events:RunExploded"
        return insert_stored_event(ledger, "run_unknown", 1, unknown, started), "run_unknown"
    raise AssertionError(kind)


POISONS = {
    "a start of a run never created": "no creation event",
    "a state that is not JSON": "deserialise",
    "an unknown event class": "RunExploded",
}
"""Each kind of poison event, and words its error gives."""


@pytest.mark.parametrize(("kind", "error"), POISONS.items())
def test_an_event_that_cannot_be_applied_stops_the_projection_before_it(
    ledger: Ledger, view: RunsView, kind: str, error: str
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    rows, before = view.rows(RUN_IDS), view.position()
    position, run_id = poison(ledger, kind)
    ledger.submit(command("wait", "run_2", at=at(7)))

    with pytest.raises(ProjectionError) as stopped:
        readmodel.projector(ledger, view).run()

    assert (stopped.value.position, stopped.value.run_id) == (position, run_id)
    message = str(stopped.value)
    assert f"position {position}" in message
    assert run_id in message
    assert error in message
    assert view.position() == before < position
    assert view.rows(RUN_IDS) == rows


@pytest.mark.parametrize("kind", POISONS)
def test_with_dead_letters_a_poison_event_is_set_aside_and_the_projection_goes_on(
    ledger: Ledger, view: RunsView, kind: str
) -> None:
    three_runs(ledger)
    _, run_id = poison(ledger, kind)
    ledger.submit(command("wait", "run_2", at=at(7)))

    readmodel.projector(ledger, view, dead_letters=True, batch_size=2).run()

    lag = readmodel.lag(ledger, view).to_json_dict()
    assert (lag["behindEvents"], lag["deadLetters"]) == (0, 1)
    assert view.rows(["run_2"])["run_2"]["status"] == "waiting"
    assert run_id not in view.rows([run_id])
    assert differing(ledger, view) == {}


def a_number_jsonb_cannot_hold(ledger: Ledger) -> tuple[int, str]:
    """A creation whose input is a number PostgreSQL's `numeric` cannot hold, inserted by
    hand (the ledger refuses such a number; an older one did not); its position and run."""
    topic, created = stored_state(ledger, "run_1", 1)
    state = payload.loads(created.decode())
    state["input_json"] = "[1e131072]"
    position = insert_stored_event(ledger, "run_huge", 1, topic, payload.dumps(state).encode())
    return position, "run_huge"


@pytest.mark.parametrize("dead_letters", [False, True], ids=["stops", "set-aside"])
def test_an_event_the_read_models_database_refuses_is_found_among_its_batch(
    ledger: Ledger, view: RunsView, dead_letters: bool
) -> None:
    three_runs(ledger)
    position, run_id = a_number_jsonb_cannot_hold(ledger)
    ledger.submit(command("wait", "run_2", at=at(7)))
    runner = readmodel.projector(ledger, view, dead_letters=dead_letters)

    if ledger.database.backend == "sqlite":  # its text holds any number: nothing is refused
        runner.run()
        assert view.rows([run_id])[run_id]["input"] == "[1e131072]"  # its text, as written
    elif not dead_letters:
        with pytest.raises(ProjectionError) as stopped:
            runner.run()
        assert (stopped.value.position, stopped.value.run_id) == (position, run_id)
        assert view.position() == position - 1  # the events before it, of its batch, applied
    else:
        runner.run()
        lag = readmodel.lag(ledger, view).to_json_dict()
        assert (lag["behindEvents"], lag["deadLetters"]) == (0, 1)
        assert run_id not in view.rows([run_id])
    assert view.rows(["run_1"])["run_1"]["status"] == "completed"


def test_lag_still_answers_when_the_projection_stopped_at_an_unreadable_event(
    ledger: Ledger, view: RunsView
) -> None:
    recorded = three_runs(ledger)
    readmodel.projector(ledger, view).run()
    poison(ledger, "a state that is not JSON")
    with pytest.raises(ProjectionError):
        readmodel.projector(ledger, view).run()

    lag = readmodel.lag(ledger, view).to_json_dict()

    assert (lag["position"], lag["head"], lag["behindEvents"]) == (recorded, recorded + 1, 1)


def test_a_row_that_cannot_be_read_back_stops_the_projection_at_the_next_event_of_its_run(
    ledger: Ledger, view: RunsView
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    before = view.position()
    set_column(ledger, "run_2", "status", "bogus")
    ledger.submit(command("wait", "run_2", at=at(7)))

    with pytest.raises(ProjectionError) as stopped:
        readmodel.projector(ledger, view).run()

    assert (stopped.value.position, stopped.value.run_id) == (head(ledger), "run_2")
    assert "bogus" in str(stopped.value)
    assert view.position() == before


# Rebuild -----------------------------------------------------------------------------------


def test_a_rebuild_keeps_the_live_rows_answering_until_it_swaps_in_the_new_table(
    ledger: Ledger, view: RunsView
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    set_column(ledger, "run_2", "status", "failed")
    live = view.rows(RUN_IDS), view.position()
    seen_during: list[tuple[dict[str, dict[str, Any]], int]] = []

    position = readmodel.rebuild(
        ledger,
        view,
        batch_size=2,
        on_batch=lambda count: seen_during.append((view.rows(RUN_IDS), view.position())),
    )

    assert len(seen_during) >= 3
    assert all(seen == live for seen in seen_during)
    assert position == view.position() == head(ledger)
    assert view.rows(["run_2"])["run_2"]["status"] == "running"
    assert differing(ledger, view) == {}


def index_names(ledger: Ledger) -> list[tuple[str, str]]:
    """Each index of the read model's tables, as (table, index); SQLite's automatic ones
    (named by SQLite after their table) left out."""
    if ledger.database.backend == "sqlite":
        query = (
            "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name LIKE %s AND name NOT LIKE 'sqlite_autoindex_%%'"
        )
    else:
        query = "SELECT tablename, indexname FROM pg_indexes WHERE tablename LIKE %s"
    return sorted(behind_the_ledgers_back(ledger.database.url, query, "workflow_runs%"))


def test_tables_swapped_in_by_rebuilds_have_indexes_named_after_them(
    ledger: Ledger, view: RunsView
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    before = index_names(ledger)

    readmodel.rebuild(ledger, view)
    readmodel.rebuild(ledger, view)
    after = index_names(ledger)

    assert len(after) == len(before) >= 6
    assert [(t, i) for t, i in after if "rebuild" in i or not i.startswith(t)] == []
    assert differing(ledger, view) == {}


def test_a_rebuild_stopped_by_a_poison_event_leaves_the_live_rows_as_they_were(
    ledger: Ledger, view: RunsView
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    live = view.rows(RUN_IDS), view.position()
    poison(ledger, "a start of a run never created")

    with pytest.raises(ProjectionError):
        readmodel.rebuild(ledger, view)

    assert (view.rows(RUN_IDS), view.position()) == live


def test_a_follower_running_through_a_rebuild_does_not_write_back_what_it_repaired(
    ledger: Ledger, view: RunsView
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    set_column(ledger, "run_2", "running_ms", 999_999)
    follower = readmodel.projector(ledger, view)  # a `project --follow` started after that
    ledger.submit(command("pause", "run_2", at=at(7)))
    follower.run()  # it goes on from the damaged row
    readmodel.rebuild(ledger, view)  # the repair, while the follower waits for news
    ledger.submit(command("resume", "run_2", at=at(8)))

    follower.run()

    assert differing(ledger, view) == {}


# Verify ------------------------------------------------------------------------------------


def test_verify_reports_a_missing_row_and_a_row_whose_run_has_no_events(
    ledger: Ledger, view: RunsView
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    url, columns = ledger.database.url, ", ".join(COLUMNS)
    copied = ", ".join(("%s", *COLUMNS[1:]))
    behind_the_ledgers_back(url, "DELETE FROM workflow_runs WHERE id = %s", "run_3")
    behind_the_ledgers_back(
        url,
        f"INSERT INTO workflow_runs ({columns}) SELECT {copied} FROM workflow_runs WHERE id = %s",
        "run_phantom",
        "run_1",
    )

    found = disagreements(ledger, view)

    by_run = [d for d in found if not d.field.endswith("rollup)")]  # see test_rollup.py
    assert by_run == [
        Disagreement("run_3", "(row)", "missing", "version 1"),
        Disagreement("run_phantom", "(row)", "present", "no events"),
    ]


@pytest.mark.parametrize(
    ("column", "value"),
    [("status", "failed"), ("duration_ms", 1), ("input", '{"prompt":"bye","n":1}')],
)
def test_verify_reports_a_hand_corrupted_cell_and_a_rebuild_repairs_it(
    ledger: Ledger, view: RunsView, column: str, value: object
) -> None:
    three_runs(ledger)
    readmodel.projector(ledger, view).run()
    replayed = replayed_rows(ledger, ["run_1"])["run_1"][column]
    set_column(ledger, "run_1", column, value)

    found = [d for d in disagreements(ledger, view) if not d.field.endswith("rollup)")]
    readmodel.rebuild(ledger, view)

    assert [(d.run_id, d.field, d.replayed) for d in found] == [("run_1", column, replayed)]
    if column == "input":
        assert payload.same(payload.loads(found[0].row), payload.loads(str(value)))
    else:
        assert found[0].row == value
    assert disagreements(ledger, view) == []
