"""`runledger export`: the ledger's events as lines of the export format, in its global order.

The application's notification log is read in pages of `PAGE_EVENTS`, up to the last position
there was when the export began (events appended meanwhile wait for the next export), and
each page is written before the next is read, so memory stays flat whatever the size.

`--workspace-id W` keeps the events of the runs created in W: the log is read from its start,
so each run's creation is seen before its other events, and only the ids of W's runs are
kept. `--since TS` keeps the events this ledger recorded at or after TS (its own clock):
repeated exports then pick up whatever arrived since, late or not, and an event exported
twice at the boundary is harmless, as `import` skips what it already holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import IO, cast

from domain.events import RunCreated, RunEvent
from infrastructure import exchange
from infrastructure.application import Ledger

PAGE_EVENTS = 2000


def last_position(ledger: Ledger) -> int:
    """The highest position in the log (0 when it is empty)."""
    return ledger.recorder.max_notification_id() or 0


def export(
    ledger: Ledger,
    out: IO[bytes],
    *,
    workspace_id: str | None = None,
    since: datetime | None = None,
    stop: int | None = None,
    on_page: Callable[[int], None] | None = None,
) -> int:
    """Writes the events to `out`, up to position `stop` (default: the last one now); returns
    how many were written. `on_page(n)` is told how many positions each page went through."""
    stop = last_position(ledger) if stop is None else stop
    in_workspace: set[str] = set()
    written, start = 0, 1
    while start <= stop:
        page = ledger.recorder.select_notifications(start=start, limit=PAGE_EVENTS, stop=stop)
        if not page:
            break
        lines = []
        for notification in page:
            event = cast(RunEvent, ledger.mapper.to_domain_event(notification))
            if workspace_id is not None:
                if isinstance(event, RunCreated) and event.workspace_id == workspace_id:
                    in_workspace.add(event.originator_id)
                if event.originator_id not in in_workspace:
                    continue
            if since is not None and event.timestamp < since:
                continue
            lines.append(exchange.to_line(event, notification.id))
        out.write("".join(lines).encode())
        written += len(lines)
        if on_page is not None:
            on_page(page[-1].id - start + 1)
        start = page[-1].id + 1
    out.flush()
    return written
