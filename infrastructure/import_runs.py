"""The runs an import touches, as the ledger holds them plus the batch not yet written.

A bounded cache of run aggregates, read from the ledger when missing: past `limit` runs the
least recently used are forgotten, except those with events in the batch, which the ledger
does not hold yet. So memory stays flat however many runs a file holds, and however many of
its lines are skipped as already present.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable
from typing import cast

from eventsourcing.application import AggregateNotFoundError

from domain.events import RunEvent
from domain.run import Run
from infrastructure.application import Ledger


class ImportedRuns:
    """The runs an import touches, as the ledger holds them plus the batch not yet written:
    a bounded cache of aggregates, read from the ledger when missing."""

    def __init__(self, ledger: Ledger, limit: int) -> None:
        self.ledger = ledger
        self.limit = limit
        self.cache: OrderedDict[str, Run | None] = OrderedDict()
        self.pending: dict[tuple[str, int], RunEvent] = {}
        self.pinned: set[str] = set()
        """The runs with events in the batch: never forgotten until it is written."""

    def get(self, run_id: str) -> Run | None:
        if run_id in self.cache:
            self.cache.move_to_end(run_id)
            return self.cache[run_id]
        try:
            run: Run | None = cast(Run, self.ledger.repository.get(run_id))
        except AggregateNotFoundError:
            run = None
        self.cache[run_id] = run
        self._trim()
        return run

    def put(self, run: Run, event: RunEvent) -> None:
        self.cache[run.id] = run
        self.cache.move_to_end(run.id)
        self.pending[(run.id, event.originator_version)] = event
        self.pinned.add(run.id)

    def stored(self, run_id: str, version: int) -> RunEvent:
        """The event at `version` of the run, from the batch or else from the ledger."""
        if (run_id, version) in self.pending:
            return self.pending[(run_id, version)]
        (event,) = self.ledger.events.get(run_id, gt=version - 1, lte=version)
        return cast(RunEvent, event)

    def written(self) -> None:
        """The batch is in the ledger: its runs may be forgotten like any other."""
        self.pending.clear()
        self.pinned.clear()

    def forget(self, run_ids: Iterable[str]) -> None:
        """The batch was not written: these runs must be read from the ledger again."""
        self.written()
        for run_id in run_ids:
            self.cache.pop(run_id, None)

    def _trim(self) -> None:
        """Down to `limit`, once a quarter over it: a trim costs little per run read."""
        if len(self.cache) <= self.limit + self.limit // 4:
            return
        excess = len(self.cache) - self.limit
        oldest = itertools.islice(self.cache, excess + len(self.pinned))
        for run_id in [r for r in oldest if r not in self.pinned][:excess]:
            del self.cache[run_id]
