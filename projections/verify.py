"""`verify`: replays every run from its events and compares the replay with its row.

Pages through the runs that have events at or before the read model's position, folds each
page's events, and reports every field that differs. Rows of runs without such events are
reported too. Memory stays flat: one page of runs at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any, cast

from eventsourcing.persistence import Mapper
from pydantic.alias_generators import to_camel

from domain import payload, timestamps
from domain.errors import RunLedgerError
from domain.events import RunEvent
from projections.fold import fold
from projections.readmodel import COLUMNS, JSON_COLUMNS, RunsView, to_row

PAGE = 500


@dataclass(frozen=True)
class Disagreement:
    run_id: str
    field: str
    row: Any
    replayed: Any

    def to_json_dict(self) -> dict[str, Any]:
        field = self.field if self.field.startswith("(") else to_camel(self.field)
        return {
            "runId": self.run_id,
            "field": field,
            "row": _printable(self.field, self.row),
            "replayed": _printable(self.field, self.replayed),
        }


def verify(
    view: RunsView,
    mapper: Mapper[str],
    run_ids: Callable[[str, int, int], list[str]],
    *,
    on_run: Callable[[int], None] = lambda count: None,
) -> Iterator[Disagreement]:
    """Every disagreement between the read model and the events, run by run.

    `run_ids(after, limit, position)` pages through the ids of runs that have events at or
    before `position`, in order.
    """
    position = view.position()
    after = ""
    while page := run_ids(after, PAGE, position):
        rows = view.rows(page)
        stored = view.events_of(page, position)
        for run_id, events in groupby(stored, key=lambda e: str(e.originator_id)):
            try:
                replayed = to_row(fold(cast(RunEvent, mapper.to_domain_event(e)) for e in events))
            except Exception as error:  # e.g. an event set aside as a dead letter
                row = rows.get(run_id)
                state = "missing" if row is None else f"version {row['version']}"
                yield Disagreement(run_id, "(events)", state, f"cannot be replayed: {error}")
                continue
            yield from _compare(run_id, rows.get(run_id), replayed)
        on_run(len(page))
        after = page[-1]
    for run_id in view.run_ids_without_events(position):
        yield Disagreement(run_id, "(row)", "present", "no events")
    for key, stored, recounted in view.rollup_disagreements():
        workspace, subject, when = key
        daily = not isinstance(when, datetime)
        name = f"{workspace}/{subject}/{when if daily else timestamps.to_iso(when)}"
        field = "(daily rollup)" if daily else "(hourly rollup)"
        yield Disagreement(name, field, stored, recounted)


def _compare(
    run_id: str, row: dict[str, Any] | None, replayed: dict[str, Any]
) -> Iterator[Disagreement]:
    if row is None:
        yield Disagreement(run_id, "(row)", "missing", f"version {replayed['version']}")
        return
    for column in COLUMNS:
        if not _same(column, row.get(column), replayed[column]):
            yield Disagreement(run_id, column, row.get(column), replayed[column])


def _same(column: str, stored: Any, replayed: Any) -> bool:
    if column in JSON_COLUMNS:
        try:
            as_json = [None if text is None else payload.loads(text) for text in (stored, replayed)]
        except RunLedgerError:  # a cell that is not JSON at all
            return False
        return payload.same(as_json[0], as_json[1])
    return type(stored) is type(replayed) and bool(stored == replayed)


def _printable(column: str, value: Any) -> Any:
    """A cell as JSON: times as toISOString(), JSON columns as their JSON value."""
    if isinstance(value, datetime):
        return timestamps.to_iso(value)
    if column in JSON_COLUMNS and isinstance(value, str):
        try:
            return payload.loads(value)
        except RunLedgerError:
            return value  # a corrupted cell: show it as it is
    return value
