"""Wires the read model to the ledger's database: the adapter for its backend, the projector.

(Each backend's adapter is imported when a ledger on that backend opens the read model: a
process on SQLite never loads the PostgreSQL driver.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from eventsourcing.sqlite import SQLiteDatastore

from domain.events import RunEvent
from infrastructure.application import Ledger
from projections.projector import Projector
from projections.readmodel import SHADOW_SUFFIX, TABLE, Lag, RunsView
from projections.sqlite import SQLiteRunsView

REBUILD_ATTEMPTS = 20


def open_view(ledger: Ledger, *, shadow: bool = False) -> RunsView:
    """The `workflow_runs` read model in the ledger's database (or the shadow that `rebuild`
    fills), its tables created if missing."""
    table = TABLE + SHADOW_SUFFIX if shadow else TABLE
    name = "runledger" + (SHADOW_SUFFIX if shadow else "")
    datastore = ledger.factory.datastore  # type: ignore[attr-defined]
    events_table: str = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    view: RunsView
    if ledger.database.backend == "postgres":
        from infrastructure import postgres  # noqa: PLC0415 - the driver only where it is used
        from projections.postgres import PostgresRunsView  # noqa: PLC0415

        view = PostgresRunsView(
            datastore,
            table=table,
            events_table=events_table,
            application_name=name,
        )
        rollups = (f"{table}_{name}" for name in ("days", "durations", "hours"))
        postgres.create_tables_once(view, table, *rollups)
    else:
        view = SQLiteRunsView(
            cast(SQLiteDatastore, datastore),
            table=table,
            events_table=events_table,
            application_name=name,
        )
        view.create_table()
    return view


def projector(ledger: Ledger, view: RunsView, **options: object) -> Projector:
    return Projector(ledger.recorder, ledger.mapper, view, **options)  # type: ignore[arg-type]


def rebuild(ledger: Ledger, live: RunsView, **options: object) -> int:
    """Builds a fresh read model from the first event into a shadow table while the live one
    keeps answering, then swaps it in atomically. Interrupted, it leaves the live one as it
    was. Returns the position the new read model is at."""
    shadow = open_view(ledger, shadow=True)
    shadow.reset()
    runner = projector(ledger, shadow, **options)
    for _ in range(REBUILD_ATTEMPTS):
        runner.run()
        if shadow.swap_into(live):
            return live.position()
    raise RuntimeError(
        f"the live read model kept applying events ahead of the rebuild {REBUILD_ATTEMPTS} "
        "times; stop `project --follow` during the rebuild, or try again"
    )


def lag(ledger: Ledger, view: RunsView) -> Lag:
    position, head = view.position(), ledger.recorder.max_notification_id() or 0
    behind: float | None = 0.0
    if head > position:
        oldest = ledger.recorder.select_notifications(start=position + 1, limit=1)[0]
        try:
            recorded = cast(RunEvent, ledger.mapper.to_domain_event(oldest)).timestamp
        except Exception:  # the very event the projection stopped at may be unreadable
            behind = None
        else:
            behind = max(0.0, (datetime.now(UTC) - recorded).total_seconds())
    return Lag(position, head, behind, view.dead_letter_count())
