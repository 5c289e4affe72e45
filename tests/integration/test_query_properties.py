"""The dashboard queries' law, on SQLite and PostgreSQL: for any runs and any filters, each
answer equals the same answer computed here, in Python, from the fold of every run.

Hypothesis draws valid histories (strategies.lifecycles) spread over three days, in two
workspaces, with subjects, triggers and parents; each run is folded and its row written to
the read model through the view's `write`. Each example uses workspaces of its own, so the
rows of earlier examples are runs of other workspaces that must never show. The expected
answers below follow the definitions (a percentile p is the smallest value v with at least
p of the values <= v), not the adapters' SQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from hypothesis import given
from hypothesis import strategies as st

from domain import timestamps
from domain.errors import RunNotFound
from domain.status import OPEN_STATUSES, TERMINAL_STATUSES, RunStatus, TriggeredBy
from infrastructure.application import Ledger
from infrastructure.dashboard import open_queries
from projections.fold import RunState, fold, to_view
from projections.queries import Position, RunQueries, RunsQuery, StatsQuery, StuckQuery, TreeQuery
from projections.readmodel import RunsView
from tests import strategies
from tests.builders import T0, events_from, opened_view

SPREAD_MS = 3 * 24 * 3600 * 1000
SUBJECTS = ("wf_a", "wf_b", "wf_c")
NOW = T0 + timedelta(days=10)
MAX_PAGES = 100
moments = st.integers(min_value=-6 * 3600, max_value=SPREAD_MS // 1000 + 7200).map(
    lambda seconds: T0 + timedelta(seconds=seconds)
)
window_lengths = st.integers(min_value=1, max_value=6 * 3600 * 1000) | st.integers(
    min_value=24 * 3600 * 1000, max_value=4 * 24 * 3600 * 1000
)
"""Windows of a few hours, and windows holding whole UTC days (which PostgreSQL answers
partly from its daily rollup)."""
days_before_midnight = st.builds(
    lambda days, ms: T0.replace(hour=0) + timedelta(days=days, milliseconds=-ms),
    st.integers(min_value=0, max_value=2),
    st.integers(min_value=0, max_value=3600 * 1000),
)
TERMINAL_FIELDS = {"completed": "completed", "failed": "failed"}
TERMINAL_FIELDS |= {"cancelled": "cancelled", "timed_out": "timedOut"}


@st.composite
def workspaces_of_runs(
    draw: st.DrawFn, prefix: str, earlier: list[RunState] | None = None
) -> list[RunState]:
    """Folded runs in two workspaces, `{prefix}ws_a` and `{prefix}ws_b`; for some runs, a
    state from part of their history is added to `earlier`, if given."""
    states: list[RunState] = []
    for index in range(draw(st.integers(min_value=1, max_value=10))):
        history = draw(strategies.lifecycles(max_steps=4))
        shift = timedelta(  # spread over three UTC days
            days=draw(st.integers(min_value=0, max_value=2)),
            milliseconds=draw(st.integers(min_value=0, max_value=SPREAD_MS // 3)),
        )
        workspace = prefix + draw(st.sampled_from(["ws_a", "ws_b"]))
        candidates = [s.id for s in states if s.workspace_id == workspace]
        parent = draw(st.none() | st.sampled_from(candidates)) if candidates else None
        run_id = f"{prefix}run_{index}"
        lines = [{**line, "runId": run_id} for line in history]
        for line in lines:
            line.pop("output", None)  # jsonb would print some numbers otherwise
            line["at"] = timestamps.to_iso(timestamps.parse(line["at"]) + shift)
        lines[0] |= {
            "workspaceId": workspace,
            "subjectId": draw(st.sampled_from(SUBJECTS)),
            "triggeredBy": draw(st.sampled_from(TriggeredBy)).value,
            "parentRunId": parent,
        }
        lines[0] = {key: value for key, value in lines[0].items() if value is not None}
        events = events_from(lines, now=NOW)
        cut = draw(st.integers(min_value=0, max_value=len(events) - 1))
        if earlier is not None and cut:
            earlier.append(fold(events[:cut]))
        states.append(fold(events))
    if draw(st.booleans()):  # a child in another workspace: the contract forbids it, and
        adopter = draw(st.sampled_from(states))  # no answer may follow it there
        foreign = draw(st.sampled_from(states))._replace(id=f"{prefix}foreign")
        states.append(foreign._replace(workspace_id=prefix + "ws_x", parent_run_id=adopter.id))
    return states


positions = itertools.count(1)
prefixes = (f"ex{n}_" for n in itertools.count())


def written(view: RunsView, states: list[RunState]) -> None:
    view.write(states, Tracking(view.application_name, next(positions)))


@pytest.fixture
def read_model(database_url: str) -> Iterator[tuple[RunsView, RunQueries]]:
    with Ledger(database_url) as ledger, opened_view(ledger) as view:
        yield view, open_queries(ledger)


def json_runs(states: list[RunState]) -> list[dict[str, Any]]:
    return [to_view(state).to_json_dict() for state in states]


# runs ---------------------------------------------------------------------------------------


@st.composite
def runs_queries(draw: st.DrawFn, prefix: str, states: list[RunState]) -> RunsQuery:
    window = sorted(draw(st.lists(moments, min_size=2, max_size=2)))
    return RunsQuery(
        workspace_id=prefix + draw(st.sampled_from(["ws_a", "ws_b", "ws_none"])),
        statuses=tuple(draw(st.sets(st.sampled_from(RunStatus), max_size=3))),
        triggered_by=draw(st.none() | st.sampled_from(TriggeredBy)),
        subject_id=draw(st.none() | st.sampled_from(SUBJECTS)),
        parent_run_id=draw(st.none() | st.sampled_from([s.id for s in states])),
        created_from=draw(st.none() | st.just(window[0])),
        created_to=draw(st.none() | st.just(window[1])),
        limit=draw(st.integers(min_value=1, max_value=4)),
    )


def matching(states: list[RunState], query: RunsQuery) -> list[RunState]:
    """The runs a query asks for, newest first, ties by id descending."""
    kept = [
        state
        for state in states
        if state.workspace_id == query.workspace_id
        and (not query.statuses or state.status in query.statuses)
        and query.triggered_by in (None, state.triggered_by)
        and query.subject_id in (None, state.subject_id)
        and query.parent_run_id in (None, state.parent_run_id)
        and (query.created_from is None or state.created_at >= query.created_from)
        and (query.created_to is None or state.created_at < query.created_to)
    ]
    return sorted(kept, key=lambda state: (state.created_at, state.id), reverse=True)


def walk(queries: RunQueries, query: RunsQuery, between: Callable[[], None]) -> list[Any]:
    """Every page by cursor, the same filters each time; `between` runs before each page
    after the first."""
    pages = [queries.runs(query)]
    while (cursor := pages[-1].next_cursor) is not None:
        assert len(pages) <= MAX_PAGES, "the cursor does not move on"
        between()
        pages.append(queries.runs(replace(query, after=Position.decode(cursor))))
    assert all(len(page.runs) == query.limit for page in pages[:-1])
    return [run for page in pages for run in page.runs]


def test_walking_every_page_lists_exactly_the_matching_runs_newest_first(
    read_model: tuple[RunsView, RunQueries],
) -> None:
    view, queries = read_model

    @given(data=st.data())
    def pages_equal_the_filtered_fold(data: st.DataObject) -> None:
        prefix = next(prefixes)
        states = data.draw(workspaces_of_runs(prefix), label="runs")
        written(view, states)
        query = data.draw(runs_queries(prefix, states), label="query")

        walked = walk(queries, query, between=lambda: None)

        assert [run.to_json_dict() for run in walked] == json_runs(matching(states, query))

    pages_equal_the_filtered_fold()


def test_runs_added_while_walking_the_pages_never_repeat_a_run_nor_hide_one_that_was_there(
    read_model: tuple[RunsView, RunQueries],
) -> None:
    view, queries = read_model

    @given(data=st.data())
    def no_run_twice_none_lost(data: st.DataObject) -> None:
        prefix = next(prefixes)
        states = data.draw(workspaces_of_runs(prefix), label="runs")
        written(view, states)
        later = data.draw(workspaces_of_runs(prefix + "late_"), label="runs added while walking")
        later = [_in_workspace(state, prefix) for state in later]
        query = RunsQuery(prefix + "ws_a", limit=data.draw(st.integers(1, 3)))
        pending = iter(later)

        walked = walk(
            queries, query, between=lambda: written(view, list(itertools.islice(pending, 2)))
        )

        walked_ids = [run.id for run in walked]
        assert len(walked_ids) == len(set(walked_ids))
        assert {s.id for s in matching(states, query)} <= set(walked_ids)
        assert set(walked_ids) <= {s.id for s in matching([*states, *later], query)}

    no_run_twice_none_lost()


def _in_workspace(state: RunState, prefix: str) -> RunState:
    return state._replace(workspace_id=prefix + "ws_a", parent_run_id=None)


# stats --------------------------------------------------------------------------------------


def percentile(values: list[int], p: float) -> int:
    """The smallest value v such that at least p of the values are <= v."""
    return min(v for v in values if sum(x <= v for x in values) >= p * len(values))


def durations(values: list[int]) -> dict[str, Any]:
    if not values:
        return dict.fromkeys(["count", "p50", "p95", "p99", "max", "mean"]) | {"count": 0}
    mean = int(Fraction(sum(values), len(values)) + Fraction(1, 2))
    return {
        "count": len(values),
        "p50": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "mean": mean,
    }


def expected_stats(states: list[RunState], query: StatsQuery) -> dict[str, Any]:
    def within(moment: datetime | None) -> bool:
        return moment is not None and query.start <= moment < query.end

    mine = [
        to_view(s)
        for s in states
        if s.workspace_id == query.workspace_id and query.subject_id in (None, s.subject_id)
    ]
    created = [run for run in mine if within(run.created_at)]
    ended = [run for run in mine if within(run.completed_at)]
    timed = [run for run in ended if run.duration_ms is not None]
    subjects = sorted({run.subject_id for run in created} | {run.subject_id for run in timed})
    by_subject = []
    for subject in subjects:
        theirs = [run for run in created if run.subject_id == subject]
        entry: dict[str, Any] = {"subjectId": subject, "runs": len(theirs)}
        for status, field in TERMINAL_FIELDS.items():
            entry[field] = sum(run.status == status for run in theirs)
        values = [run.duration_ms for run in timed if run.subject_id == subject]
        entry["p95DurationMs"] = percentile(values, 0.95) if values else None  # type: ignore[arg-type]
        by_subject.append(entry)
    by_subject.sort(key=lambda entry: -entry["runs"])  # stable: then by subject
    step = query.bucket.step
    first = query.bucket.floor(query.start)
    buckets = []
    start = first
    while start < query.end:
        bucket: dict[str, Any] = {"start": timestamps.to_iso(start)}
        bucket["created"] = sum(start <= run.created_at < start + step for run in created)
        for status, field in TERMINAL_FIELDS.items():
            bucket[field] = sum(
                run.status == status and start <= run.completed_at < start + step  # type: ignore[operator]
                for run in ended
            )
        buckets.append(bucket)
        start += step
    return {
        "workspaceId": query.workspace_id,
        "from": timestamps.to_iso(query.start),
        "to": timestamps.to_iso(query.end),
        "bucket": query.bucket.value,
        "countsByStatus": {s.value: sum(run.status == s for run in created) for s in RunStatus},
        "durationMs": durations([run.duration_ms for run in timed]),  # type: ignore[misc]
        "bySubject": by_subject,
        "buckets": buckets,
    }


def test_stats_equal_the_counts_percentiles_and_buckets_of_the_folded_runs(
    read_model: tuple[RunsView, RunQueries],
) -> None:
    view, queries = read_model

    @given(data=st.data())
    def stats_equal_the_fold(data: st.DataObject) -> None:
        prefix = next(prefixes)
        earlier: list[RunState] = []  # written first, so the rows (and the rollup) move
        states = data.draw(workspaces_of_runs(prefix, earlier), label="runs")
        written(view, earlier)
        written(view, states)
        start = data.draw(moments | days_before_midnight)
        end = start + timedelta(milliseconds=data.draw(window_lengths))
        query = StatsQuery(
            workspace_id=prefix + data.draw(st.sampled_from(["ws_a", "ws_b"])),
            start=start,
            end=end,
            subject_id=data.draw(st.none() | st.sampled_from(SUBJECTS)),
            bucket=data.draw(st.sampled_from(["hour", "day"]).map(_bucket)),
        )

        answer = queries.stats(query).to_json_dict()

        assert answer == expected_stats(states, query)

    stats_equal_the_fold()


def _bucket(name: str) -> Any:
    return StatsQuery.parse(workspace_id="w", now=NOW, bucket=name).bucket


# tree and stuck -----------------------------------------------------------------------------


def expected_tree(states: list[RunState], root: RunState) -> dict[str, Any]:
    children = sorted(
        (s for s in states if s.parent_run_id == root.id and s.workspace_id == root.workspace_id),
        key=lambda s: (s.created_at, s.id),
    )
    return {
        "run": to_view(root).to_json_dict(),
        "children": [expected_tree(states, child) for child in children],
    }


def test_a_tree_equals_the_descendants_of_the_folded_runs(
    read_model: tuple[RunsView, RunQueries],
) -> None:
    view, queries = read_model

    @given(data=st.data())
    def tree_equals_the_fold(data: st.DataObject) -> None:
        prefix = next(prefixes)
        states = data.draw(workspaces_of_runs(prefix), label="runs")
        written(view, states)
        root = data.draw(st.sampled_from(states), label="root")
        workspace = data.draw(st.none() | st.sampled_from([prefix + "ws_a", prefix + "ws_b"]))

        if workspace not in (None, root.workspace_id):
            with pytest.raises(RunNotFound):
                queries.tree(TreeQuery(root.id, workspace_id=workspace))
            return
        answer = queries.tree(TreeQuery(root.id, workspace_id=workspace)).to_json_dict()

        assert answer == expected_tree(states, root)

    tree_equals_the_fold()


def test_stuck_equals_the_open_runs_of_the_fold_idle_the_longest(
    read_model: tuple[RunsView, RunQueries],
) -> None:
    view, queries = read_model

    @given(data=st.data())
    def stuck_equals_the_fold(data: st.DataObject) -> None:
        prefix = next(prefixes)
        states = data.draw(workspaces_of_runs(prefix), label="runs")
        written(view, states)
        idle_for = data.draw(st.sampled_from(["1ms", "30m", "2h", "1d", "2d6h"]))
        query = StuckQuery.parse(
            workspace_id=prefix + "ws_a",
            idle_for=idle_for,
            now=data.draw(moments),
            limit=data.draw(st.integers(min_value=1, max_value=5)),
        )

        answer = queries.stuck(query)

        stuck = sorted(
            (
                s
                for s in states
                if s.workspace_id == query.workspace_id
                and s.status in OPEN_STATUSES
                and s.updated_at < query.idle_since
            ),
            key=lambda s: (s.updated_at, s.id),
        )
        assert [run.to_json_dict() for run in answer.runs] == json_runs(stuck[: query.limit])
        assert answer.more == (len(stuck) > query.limit)
        assert not {run.status for run in answer.runs} & TERMINAL_STATUSES

    stuck_equals_the_fold()
