"""The dashboard queries (projections/queries.py) on SQLite and PostgreSQL: each answer, and
what each filter and window keeps; bad and hostile filters are rejected as `invalid`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import pytest

from domain.errors import InvalidCommand, RunLedgerError
from domain.status import RunStatus, TriggeredBy
from infrastructure import readmodel
from infrastructure.application import Ledger
from infrastructure.dashboard import open_queries
from projections.fold import to_view
from projections.queries import (
    Position,
    RunQueries,
    RunsQuery,
    StatsQuery,
    StuckQuery,
    TreeQuery,
)
from tests.builders import T0, FakeClock, at, command, create, opened_view

HOUR = 3600


def recorded(ledger: Ledger, *lines: Mapping[str, Any]) -> None:
    """Submits the commands, then catches the read model up."""
    for line in lines:
        ledger.submit(line)
    with opened_view(ledger) as view:
        readmodel.projector(ledger, view).run()


def finished(run_id: str, started: float, ended: float, **fields: Any) -> list[dict[str, Any]]:
    """A run created at `started`, started then, completed at `ended` (seconds after T0)."""
    return [
        create(run_id, at=at(started), **fields),
        command("start", run_id, at=at(started)),
        command("complete", run_id, at=at(ended)),
    ]


def ids(runs: Iterable[Any]) -> list[str]:
    return [run.id for run in runs]


@pytest.fixture
def queries(ledger: Ledger) -> RunQueries:
    return open_queries(ledger)


# runs ---------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_and_ties_by_id_descending(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger, create("run_a", at=at(5)), create("run_b", at=at(9)), create("run_c", at=at(5))
    )

    page = queries.runs(RunsQuery("ws_1"))

    assert ids(page.runs) == ["run_b", "run_c", "run_a"]
    assert page.next_cursor is None


def test_a_run_is_printed_as_show_prints_it(ledger: Ledger, queries: RunQueries) -> None:
    recorded(ledger, *finished("run_1", 0, 2, input={"n": [1, 2]}))

    (run,) = queries.runs(RunsQuery("ws_1")).runs

    assert run.to_json_dict() == to_view(ledger.state("run_1")).to_json_dict()
    assert run.to_json_dict()["input"] == {"n": [1, 2]}
    assert (run.status, run.duration_ms) == (RunStatus.COMPLETED, 2000)


def test_walking_the_pages_by_cursor_returns_every_run_once_then_a_null_cursor(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(ledger, *(create(f"run_{i}", at=at(i // 2)) for i in range(7)))

    pages = [queries.runs(RunsQuery("ws_1", limit=3))]
    while (cursor := pages[-1].next_cursor) is not None:
        pages.append(queries.runs(RunsQuery.parse(workspace_id="ws_1", limit=3, cursor=cursor)))

    assert [len(page.runs) for page in pages] == [3, 3, 1]
    assert ids(run for page in pages for run in page.runs) == ids(
        queries.runs(RunsQuery("ws_1")).runs
    )


def test_runs_added_between_pages_never_repeat_a_run_nor_hide_one_that_was_there(
    ledger: Ledger, clock: FakeClock, queries: RunQueries
) -> None:
    recorded(ledger, *(create(f"run_{i}", at=at(10 * i)) for i in range(6)))
    first = queries.runs(RunsQuery("ws_1", limit=2))

    recorded(ledger, create("run_newest", at=at(100)), create("run_old", at=at(1)))
    second = queries.runs(RunsQuery.parse(workspace_id="ws_1", limit=2, cursor=first.next_cursor))
    recorded(ledger, create("run_between", at=at(15)))
    rest = queries.runs(RunsQuery.parse(workspace_id="ws_1", limit=50, cursor=second.next_cursor))

    walked = ids([*first.runs, *second.runs, *rest.runs])
    assert len(walked) == len(set(walked))
    assert {f"run_{i}" for i in range(6)} <= set(walked)
    assert walked == [
        "run_5",
        "run_4",
        "run_3",
        "run_2",
        "run_between",
        "run_1",
        "run_old",
        "run_0",
    ]


def test_each_filter_keeps_only_the_runs_that_match(ledger: Ledger, queries: RunQueries) -> None:
    recorded(
        ledger,
        *finished("run_done", 0, 5, subjectId="wf_a", triggeredBy="agent"),
        create("run_child", at=at(10), parentRunId="run_done", subjectId="wf_b"),
        create("run_failed", at=at(20), subjectId="wf_b"),
        command("fail", "run_failed", at=at(21)),
        create("run_open", at=at(30), subjectId="wf_a", triggeredBy="event"),
    )

    def listed(**filters: Any) -> list[str]:
        return ids(queries.runs(RunsQuery.parse(workspace_id="ws_1", **filters)).runs)

    assert listed(statuses=["pending"]) == ["run_open", "run_child"]
    assert listed(statuses=["failed", "completed"]) == ["run_failed", "run_done"]
    assert listed(statuses=["failed", "failed", "completed"]) == ["run_failed", "run_done"]
    assert listed(triggered_by="agent") == ["run_done"]
    assert listed(subject_id="wf_a") == ["run_open", "run_done"]
    assert listed(parent_run_id="run_done") == ["run_child"]
    assert listed(created_from=at(10), created_to=at(30)) == ["run_failed", "run_child"]
    assert listed(subject_id="wf_a", statuses=["pending"], triggered_by="event") == ["run_open"]
    assert listed(subject_id="wf_none") == []


def test_a_run_of_another_workspace_never_appears_whatever_the_filters(
    ledger: Ledger, clock: FakeClock, queries: RunQueries
) -> None:
    recorded(
        ledger,
        *finished("run_mine", 0, 5),
        *finished("run_theirs", 1, 6, workspaceId="ws_2"),
        create("run_their_child", at=at(7), workspaceId="ws_2", parentRunId="run_theirs"),
    )
    now = T0 + timedelta(hours=1)

    listed = queries.runs(RunsQuery("ws_1", parent_run_id="run_theirs")).runs
    everything = queries.runs(RunsQuery("ws_1")).runs
    stats = queries.stats(StatsQuery("ws_1", T0, now))
    stuck = queries.stuck(StuckQuery("ws_1", timedelta(seconds=1), now)).runs

    assert (listed, ids(everything), stuck) == ([], ["run_mine"], [])
    assert sum(stats.counts_by_status.values()) == 1
    assert stats.duration_ms.count == 1
    with pytest.raises(RunLedgerError) as caught:
        queries.tree(TreeQuery("run_theirs", workspace_id="ws_1"))
    assert caught.value.code == "not_found"


# stats --------------------------------------------------------------------------------------


def test_stats_count_the_runs_created_in_the_window_under_all_eight_statuses(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger,
        create("run_before", at=at(0)),
        *finished("run_done", 10, 20),
        create("run_failed", at=at(30)),
        command("fail", "run_failed", at=at(31)),
        create("run_open", at=at(40)),
        create("run_at_the_end", at=at(60)),
    )

    stats = queries.stats(
        StatsQuery("ws_1", T0 + timedelta(seconds=10), T0 + timedelta(seconds=60))
    )

    assert stats.counts_by_status == {
        "pending": 1,
        "running": 0,
        "paused": 0,
        "waiting": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "timed_out": 0,
    }


def test_duration_percentiles_are_the_smallest_values_with_that_share_at_or_below_them(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(ledger, *(line for i in range(1, 21) for line in finished(f"run_{i}", 0, i)))

    stats = queries.stats(StatsQuery("ws_1", T0, T0 + timedelta(hours=1)))

    assert stats.duration_ms.to_json_dict() == {
        "count": 20,
        "p50": 10_000,
        "p95": 19_000,
        "p99": 20_000,
        "max": 20_000,
        "mean": 10_500,
    }


def test_the_mean_duration_is_rounded_half_up_and_runs_that_never_started_have_none(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger,
        *finished("run_1", 0, 0.001),
        *finished("run_2", 0, 0.002),
        create("run_cancelled", at=at(0)),
        command("cancel", "run_cancelled", at=at(1)),
    )

    stats = queries.stats(StatsQuery("ws_1", T0, T0 + timedelta(hours=1)))

    assert (stats.duration_ms.count, stats.duration_ms.mean) == (2, 2)
    assert stats.buckets[0].cancelled == 1


def test_stats_by_subject_are_busiest_first_with_each_subjects_p95(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger,
        *finished("run_a1", 0, 1, subjectId="wf_a"),
        *finished("run_b1", 0, 4, subjectId="wf_b"),
        *finished("run_b2", 0, 2, subjectId="wf_b"),
        create("run_b3", at=at(0), subjectId="wf_b"),
        command("timeOut", "run_b3", at=at(9)),
    )

    stats = queries.stats(StatsQuery("ws_1", T0, T0 + timedelta(hours=1)))

    assert [subject.to_json_dict() for subject in stats.by_subject] == [
        {
            "subjectId": "wf_b",
            "runs": 3,
            "completed": 2,
            "failed": 0,
            "cancelled": 0,
            "timedOut": 1,
            "p95DurationMs": 4000,
        },
        {
            "subjectId": "wf_a",
            "runs": 1,
            "completed": 1,
            "failed": 0,
            "cancelled": 0,
            "timedOut": 0,
            "p95DurationMs": 1000,
        },
    ]


def test_buckets_cover_every_utc_hour_of_the_window_with_runs_created_and_finished(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger,
        *finished("run_1", 10, 2 * HOUR + 5),
        create("run_2", at=at(HOUR + 1)),
        command("fail", "run_2", at=at(HOUR + 2)),
    )
    start = T0 + timedelta(minutes=30)

    stats = queries.stats(StatsQuery("ws_1", start, T0 + timedelta(hours=3)))

    assert [(b.start, b.created, b.completed, b.failed) for b in stats.buckets] == [
        (T0, 0, 0, 0),
        (T0 + timedelta(hours=1), 1, 0, 1),
        (T0 + timedelta(hours=2), 0, 1, 0),
    ]


def test_the_default_window_is_the_last_24_hours_by_the_ledgers_clock(
    ledger: Ledger, clock: FakeClock, queries: RunQueries
) -> None:
    recorded(ledger, create("run_old", at=at(0)), create("run_new", at=at(2 * HOUR)))
    clock.now = T0 + timedelta(hours=25)

    query = StatsQuery.parse(workspace_id="ws_1", now=ledger.now(), bucket="day")
    stats = queries.stats(query)

    assert (query.start, query.end) == (T0 + timedelta(hours=1), clock.now)
    assert stats.counts_by_status["pending"] == 1
    assert [bucket.start for bucket in stats.buckets] == [
        T0.replace(hour=0),
        T0.replace(hour=0) + timedelta(days=1),
    ]


# tree and stuck -----------------------------------------------------------------------------


def test_a_tree_nests_the_descendants_oldest_first_with_status_and_duration(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger,
        *finished("run_root", 0, 10),
        create("run_b", at=at(3), parentRunId="run_root"),
        *finished("run_a", 2, 4, parentRunId="run_root"),
        create("run_grandchild", at=at(5), parentRunId="run_b"),
        create("run_other", at=at(6)),
    )

    tree = queries.tree(TreeQuery("run_root")).to_json_dict()

    def shape(node: dict[str, Any]) -> Any:
        run = node["run"]
        return (run["id"], run["status"], run["durationMs"], [shape(c) for c in node["children"]])

    assert shape(tree) == (
        "run_root",
        "completed",
        10_000,
        [
            ("run_a", "completed", 2000, []),
            ("run_b", "pending", None, [("run_grandchild", "pending", None, [])]),
        ],
    )


def test_the_tree_of_a_run_the_read_model_does_not_hold_is_not_found(
    ledger: Ledger, queries: RunQueries
) -> None:
    ledger.submit(create("run_unprojected", at=at(0)))

    with pytest.raises(RunLedgerError) as caught:
        queries.tree(TreeQuery("run_unprojected"))

    assert caught.value.code == "not_found"


def test_a_tree_larger_than_its_limit_is_too_large_and_advises_the_parent_filter(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger,
        create("run_root", at=at(0)),
        *(create(f"run_{i}", at=at(1), parentRunId="run_root") for i in range(3)),
    )

    with pytest.raises(RunLedgerError) as caught:
        queries.tree(TreeQuery("run_root", max_nodes=3))

    assert caught.value.code == "too_large"
    assert "the runs whose parentRunId is 'run_root'" in caught.value.message
    assert "--" not in caught.value.message  # HTTP shows it too: no command-line option


def test_a_tree_deeper_than_its_limit_is_refused_as_too_large(
    ledger: Ledger, queries: RunQueries
) -> None:
    chain = [create("run_0", at=at(0))]
    chain += [create(f"run_{i}", at=at(i), parentRunId=f"run_{i - 1}") for i in range(1, 4)]
    recorded(ledger, *chain)

    allowed = queries.tree(TreeQuery("run_0", max_depth=3))
    with pytest.raises(RunLedgerError) as caught:
        queries.tree(TreeQuery("run_0", max_depth=2))

    assert allowed.children[0].children[0].children[0].run.id == "run_3"
    assert caught.value.code == "too_large"


def test_stuck_lists_the_open_runs_idle_longer_than_the_duration_idlest_first(
    ledger: Ledger, queries: RunQueries
) -> None:
    recorded(
        ledger,
        create("run_pending", at=at(60)),
        create("run_waiting", at=at(0)),
        command("start", "run_waiting", at=at(10)),
        command("wait", "run_waiting", at=at(30)),
        *finished("run_done", 0, 1),
        create("run_recent", at=at(HOUR)),
        create("run_idle_exactly_45m", at=at(45 * 60)),
    )
    now = T0 + timedelta(hours=1, minutes=30)

    stuck = queries.stuck(StuckQuery.parse(workspace_id="ws_1", idle_for="45m", now=now))
    limited = queries.stuck(StuckQuery.parse(workspace_id="ws_1", idle_for="45m", now=now, limit=1))

    assert ids(stuck.runs) == ["run_waiting", "run_pending"]
    assert stuck.idle_since == now - timedelta(minutes=45)
    assert (ids(limited.runs), limited.more, stuck.more) == (["run_waiting"], True, False)


# Rejections (no database) -------------------------------------------------------------------

HOSTILE = [
    "ws_1' OR '1'='1",
    "ws_1; DROP TABLE workflow_runs",
    "ws%",
    "_",
    "ws_1\n",
    "ws\x00",
    "wś_1",
    "ωσ",
    "🚀",
    "",
    "w" * 129,
    "w" * 10_000,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_identifiers_are_rejected_as_invalid_in_every_query(value: str) -> None:
    now = T0
    attempts: list[Callable[[], object]] = [
        lambda: RunsQuery.parse(workspace_id=value),
        lambda: RunsQuery.parse(workspace_id="ws_1", subject_id=value),
        lambda: RunsQuery.parse(workspace_id="ws_1", parent_run_id=value),
        lambda: StatsQuery.parse(workspace_id=value, now=now),
        lambda: StatsQuery.parse(workspace_id="ws_1", now=now, subject_id=value),
        lambda: TreeQuery(value),
        lambda: StuckQuery.parse(workspace_id=value, idle_for="1h", now=now),
    ]

    for attempt in attempts:
        with pytest.raises(InvalidCommand):
            attempt()


@pytest.mark.parametrize(
    "bad",
    [
        {"statuses": ["done"]},
        {"statuses": ["pending", "PENDING"]},
        {"triggered_by": "robot"},
        {"created_from": "yesterday"},
        {"created_to": "2026-11-24T05:00:00"},
        {"created_from": "2026-13-40T05:00:00Z"},
        {"limit": 0},
        {"limit": 1001},
        {"cursor": "not a cursor"},
        {"cursor": Position(T0, "run_1").encode()[:-3]},
        {"cursor": "fHJ1bl8x"},
        {"cursor": "x" * 100_000},
    ],
)
def test_malformed_filters_of_runs_are_rejected_as_invalid(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidCommand):
        RunsQuery.parse(workspace_id="ws_1", **bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"start": "2026-11-24T05:00:00Z", "end": "2026-11-24T05:00:00Z"},
        {"start": "2026-11-25T05:00:00Z", "end": "2026-11-24T05:00:00Z"},
        {"start": "0001-01-01T00:00:00Z"},
        {"bucket": "week"},
        {"end": "soon"},
    ],
)
def test_malformed_stats_windows_are_rejected_as_invalid(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidCommand):
        StatsQuery.parse(workspace_id="ws_1", now=T0, **bad)


@pytest.mark.parametrize(
    "idle_for", ["", "30", "m", "-5m", "0m", "1w", "1.5h", "3651d", "9" * 40 + "d"]
)
def test_malformed_idle_durations_are_rejected_as_invalid(idle_for: str) -> None:
    with pytest.raises(InvalidCommand):
        StuckQuery.parse(workspace_id="ws_1", idle_for=idle_for, now=T0)


def test_idle_durations_add_up_their_parts() -> None:
    query = StuckQuery.parse(workspace_id="ws_1", idle_for="1d2h30m15s500ms", now=T0)

    assert query.idle_for == timedelta(days=1, hours=2, minutes=30, seconds=15, milliseconds=500)


def test_a_cursor_decodes_to_the_place_it_was_made_from() -> None:
    place = Position(T0 + timedelta(milliseconds=120), "run_x:1.2-3")

    assert Position.decode(place.encode()) == place


def test_odd_but_valid_identifiers_are_answered(ledger: Ledger, queries: RunQueries) -> None:
    recorded(ledger, create("run_1", at=at(0)))

    for value in ["ws:1.2-3", "W" * 128, "0"]:
        assert (
            queries.runs(RunsQuery.parse(workspace_id=value, triggered_by=TriggeredBy.USER)).runs
            == []
        )
