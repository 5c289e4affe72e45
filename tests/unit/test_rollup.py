"""The daily rollup's bookkeeping (projections/rollup.py): what a run's move from one row to
the next changes, day by day. Any history, written in any steps, sums to what its final
state alone contributes."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.status import RunStatus
from projections.fold import fold
from projections.rollup import COUNT_COLUMNS, DayTallies, Placement, day_of
from tests import strategies
from tests.builders import T0, at, command, create, events_from


def summed(tallies: DayTallies) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The changes by day key, counts then durations, zero changes left out."""
    days = {tuple(row[:3]): [*row[3:], []] for row in tallies.rows()}
    for *key, values in tallies.durations():
        days.setdefault(tuple(key), [*[0] * len(COUNT_COLUMNS), []])[-1] = values
    return {key: tuple(day) for key, day in days.items() if any(day[:-1]) or day[-1]}


def hourly(tallies: DayTallies) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The hourly changes by key, zero changes left out."""
    return {tuple(row[:3]): tuple(row[3:]) for row in tallies.hour_rows() if any(row[3:])}


def contribution(placement: Placement) -> DayTallies:
    tallies = DayTallies()
    tallies.move(None, placement)
    return tallies


def test_a_new_run_counts_once_on_its_creation_day_and_once_on_its_finishing_day() -> None:
    events = events_from(
        [
            create(at=at(0)),
            command("start", at=at(60)),
            command("complete", at=at(26 * 3600)),  # the next day
        ],
        now=T0 + timedelta(days=2),
    )

    rows = summed(contribution(Placement.of(fold(events))))

    figures = dict.fromkeys(COUNT_COLUMNS, 0)
    created = dict(figures, created_completed=1)
    finished = dict(figures, finished_completed=1)
    assert rows == {
        ("ws_1", "wf_checkout", T0.date()): (*created.values(), []),
        ("ws_1", "wf_checkout", (T0 + timedelta(days=1)).date()): (
            *finished.values(),
            [26 * 3600 * 1000 - 60_000],
        ),
    }


def test_the_hourly_rollup_counts_a_run_once_created_and_once_finished() -> None:
    events = events_from(
        [create(at=at(0)), command("start", at=at(60)), command("cancel", at=at(3600))]
    )
    tallies = DayTallies()

    tallies.move(None, Placement.of(fold(events[:1])))
    tallies.move(Placement.of(fold(events[:1])), Placement.of(fold(events[:2])))
    tallies.move(Placement.of(fold(events[:2])), Placement.of(fold(events)))

    assert hourly(tallies) == {
        ("ws_1", "wf_checkout", T0): (1, 0, 0, 0, 0),
        ("ws_1", "wf_checkout", T0 + timedelta(hours=1)): (0, 0, 0, 1, 0),
    }


def test_a_status_change_moves_the_run_between_two_created_counts() -> None:
    events = events_from([create(at=at(0)), command("start", at=at(1))])
    tallies = DayTallies()

    tallies.move(Placement.of(fold(events[:1])), Placement.of(fold(events)))

    changed = {
        column: figure
        for column, figure in zip(COUNT_COLUMNS, tallies.rows()[0][3:], strict=True)
        if figure
    }
    assert changed == {"created_pending": -1, "created_running": 1}


def test_a_finished_run_that_changes_how_it_finished_is_refused() -> None:
    events = events_from(
        [create(at=at(0)), command("start", at=at(1)), command("fail", at=at(2), error="x")]
    )
    failed = Placement.of(fold(events))

    with pytest.raises(ValueError, match="changed how it finished"):
        DayTallies().move(failed, Placement(**{**failed.__dict__, "status": RunStatus.COMPLETED}))


@given(history=strategies.lifecycles(max_steps=6), cuts=st.lists(st.integers(0, 8), max_size=4))
def test_writing_a_history_in_any_steps_sums_to_its_final_contribution(
    history: list[dict[str, Any]], cuts: list[int]
) -> None:
    events = events_from(history)
    versions = sorted({min(max(cut, 1), len(events)) for cut in cuts} | {len(events)})
    tallies = DayTallies()
    before = None
    for version in versions:
        after = Placement.of(fold(events[:version]))
        tallies.move(before, after)
        before = after

    assert summed(tallies) == summed(contribution(before))  # type: ignore[arg-type]
    assert hourly(tallies) == hourly(contribution(before))  # type: ignore[arg-type]


def test_days_are_utc_days() -> None:
    moment = T0.replace(hour=23, minute=30)
    assert day_of(moment.astimezone(ZoneInfo("Asia/Tokyo"))) == moment.date()
    assert Counter(str(day_of(T0 + timedelta(hours=h))) for h in range(48)) == {
        str(T0.date()): 19,
        str((T0 + timedelta(days=1)).date()): 24,
        str((T0 + timedelta(days=2)).date()): 5,
    }
