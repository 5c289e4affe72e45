"""The daily and hourly rollups that `stats` reads on PostgreSQL for whole UTC days and
hours: kept by the projection in the rows' transaction, checked by `verify`, carried by
`rebuild`, and filled for a read model made before they existed. (SQLite computes stats
from the rows alone.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from infrastructure import readmodel
from infrastructure.application import Ledger
from infrastructure.dashboard import open_queries
from projections.postgres import PostgresRunsView
from projections.queries import StatsQuery
from projections.rollup import SEGMENTS
from projections.verify import verify
from tests.builders import T0, FakeClock, at, behind_the_ledgers_back, command, create, opened_view
from tests.conftest import reset_postgres

DAY = 24 * 3600


@pytest.fixture
def ledger(postgres_database: str) -> Iterator[Ledger]:
    reset_postgres(postgres_database)
    clock = FakeClock()
    clock.now = T0 + timedelta(days=4)
    with Ledger(postgres_database, clock=clock) as app:
        yield app


@pytest.fixture
def view(ledger: Ledger) -> Iterator[PostgresRunsView]:
    with opened_view(ledger) as opened:
        assert isinstance(opened, PostgresRunsView)
        yield opened


def three_days(ledger: Ledger) -> None:
    """Runs over three UTC days, some finishing the day after they were created."""
    for day in range(3):
        base = day * DAY
        for index, ending in enumerate(["complete", "fail", "cancel", None]):
            run_id = f"run_{day}_{index}"
            ledger.submit(create(run_id, at=at(base + index), subjectId=f"wf_{index % 2}"))
            if ending is None:
                continue
            ledger.submit(command("start", run_id, at=at(base + 10 + index)))
            fields = {"error": "boom"} if ending == "fail" else {}
            ledger.submit(command(ending, run_id, at=at(base + 20 * 3600 + index * 3000), **fields))


def stats_over(ledger: Ledger, days: int, bucket: str = "day") -> dict[str, object]:
    query = StatsQuery.parse(
        workspace_id="ws_1",
        now=ledger.now(),
        start="2026-11-24T00:00:00Z",
        end=(T0.replace(hour=0) + timedelta(days=days)).isoformat(),
        bucket=bucket,
    )
    return open_queries(ledger).stats(query).to_json_dict()


def test_the_projection_keeps_the_rollup_equal_to_a_recount_of_the_rows(
    ledger: Ledger, view: PostgresRunsView
) -> None:
    projector = readmodel.projector(ledger, view)
    three_days(ledger)
    projector.run()  # then more, in small live batches
    ledger.submit(command("start", "run_2_3", at=at(2 * DAY + 23 * 3600)))
    projector.run()
    ledger.submit(command("complete", "run_2_3", at=at(3 * DAY + 60)))
    ledger.submit(command("linkCfWorkflow", "run_2_3", at=at(3 * DAY + 61), cfWorkflowId="cf_1"))
    projector.run()

    assert view.rollup_disagreements() == []
    stats = stats_over(ledger, 4)
    assert stats["countsByStatus"] == {
        "pending": 2,
        "running": 0,
        "paused": 0,
        "waiting": 0,
        "completed": 4,
        "failed": 3,
        "cancelled": 3,
        "timed_out": 0,
    }


def test_a_damaged_rollup_is_recounted_from_the_rows(
    ledger: Ledger, view: PostgresRunsView
) -> None:
    three_days(ledger)
    readmodel.projector(ledger, view).run()
    windows = [(days, bucket) for days in (1, 2, 3) for bucket in ("day", "hour")]
    before = [stats_over(ledger, days, bucket) for days, bucket in windows]

    behind_the_ledgers_back(ledger.database.url, "DELETE FROM workflow_runs_days")
    behind_the_ledgers_back(ledger.database.url, "UPDATE workflow_runs_hours SET created = 7")
    assert view.rollup_disagreements() != []
    view.refill_rollup()

    assert view.rollup_disagreements() == []
    again = [stats_over(ledger, days, bucket) for days, bucket in windows]
    assert again == before


def verified_after(
    ledger: Ledger, view: PostgresRunsView, statement: str, *params: object
) -> list[dict[str, Any]]:
    """What `verify` reports once three days are projected and `statement` changed a rollup
    behind the projection's back."""
    three_days(ledger)
    readmodel.projector(ledger, view).run()
    behind_the_ledgers_back(ledger.database.url, statement, *params)
    return [d.to_json_dict() for d in verify(view, ledger.mapper, view.event_run_ids)]


def test_verify_reports_a_rollup_that_disagrees_with_the_rows(
    ledger: Ledger, view: PostgresRunsView
) -> None:
    found = verified_after(
        ledger,
        view,
        "UPDATE workflow_runs_days SET created_completed = created_completed + 5 "
        "WHERE subject_id = 'wf_0' AND day = %s",
        T0.date(),
    )

    assert len(found) == 1
    assert found[0]["runId"] == f"ws_1/wf_0/{T0.date()}"
    assert found[0]["field"] == "(daily rollup)"
    assert found[0]["row"]["created_completed"] == found[0]["replayed"]["created_completed"] + 5


def test_verify_reports_an_hourly_rollup_that_disagrees_with_the_rows(
    ledger: Ledger, view: PostgresRunsView
) -> None:
    found = verified_after(
        ledger,
        view,
        "UPDATE workflow_runs_hours SET finished_failed = finished_failed + 1 WHERE hour = %s",
        T0,
    )

    assert [(d["runId"], d["field"]) for d in found] == [
        ("ws_1/wf_0/2026-11-24T05:00:00.000Z", "(hourly rollup)"),
        ("ws_1/wf_1/2026-11-24T05:00:00.000Z", "(hourly rollup)"),
    ]
    assert [d["row"]["finished_failed"] - d["replayed"]["finished_failed"] for d in found] == [
        1,
        1,
    ]


def test_rebuild_swaps_in_a_rollup_of_its_own(ledger: Ledger, view: PostgresRunsView) -> None:
    three_days(ledger)
    readmodel.projector(ledger, view).run()
    expected = stats_over(ledger, 3)
    behind_the_ledgers_back(ledger.database.url, "DELETE FROM workflow_runs_days")
    behind_the_ledgers_back(ledger.database.url, "DELETE FROM workflow_runs_hours")

    readmodel.rebuild(ledger, view)

    assert view.rollup_disagreements() == []
    assert stats_over(ledger, 3) == expected


def test_a_read_model_made_before_the_rollup_gets_one_filled_from_its_rows(
    ledger: Ledger, view: PostgresRunsView
) -> None:
    three_days(ledger)
    readmodel.projector(ledger, view).run()
    expected = [stats_over(ledger, 3), stats_over(ledger, 3, "hour")]
    behind_the_ledgers_back(ledger.database.url, "DROP TABLE workflow_runs_days")
    behind_the_ledgers_back(ledger.database.url, "DROP TABLE workflow_runs_hours")

    with opened_view(ledger) as reopened:
        assert isinstance(reopened, PostgresRunsView)
        assert reopened.rollup_disagreements() == []
    assert [stats_over(ledger, 3), stats_over(ledger, 3, "hour")] == expected


def test_a_days_durations_written_in_many_batches_are_merged_into_few_segments(
    ledger: Ledger, view: PostgresRunsView
) -> None:
    projector = readmodel.projector(ledger, view)
    for index in range(3 * SEGMENTS):  # one batch each: one segment each, until merged
        run_id = f"run_{index}"
        ledger.submit(create(run_id, at=at(index)))
        ledger.submit(command("start", run_id, at=at(index + 1)))
        ledger.submit(command("complete", run_id, at=at(index + 1 + (index * 7) % 50)))
        projector.run()

    (segments,) = behind_the_ledgers_back(
        ledger.database.url, "SELECT count(*) FROM workflow_runs_durations"
    )
    durations = sorted(1000 * ((index * 7) % 50) for index in range(3 * SEGMENTS))
    stats = stats_over(ledger, 1)

    assert 1 <= segments[0] <= SEGMENTS
    assert view.rollup_disagreements() == []
    assert stats["durationMs"]["max"] == durations[-1]  # type: ignore[index]
    assert stats["durationMs"]["p50"] == durations[len(durations) // 2 - 1]  # type: ignore[index]
