"""Wires the dashboard queries to the ledger's database: the adapter for its backend (imported
for a ledger on that backend only, as in infrastructure/readmodel.py)."""

from __future__ import annotations

from typing import cast

from eventsourcing.sqlite import SQLiteDatastore

from infrastructure.application import Ledger
from infrastructure.readmodel import open_view
from projections.queries import RunQueries
from projections.queries_sqlite import SQLiteRunQueries
from projections.readmodel import TABLE


def open_queries(ledger: Ledger) -> RunQueries:
    """The dashboard queries over the ledger's `workflow_runs` read model (its tables created
    if missing: an empty read model answers with nothing)."""
    open_view(ledger)
    datastore = ledger.factory.datastore  # type: ignore[attr-defined]
    if ledger.database.backend == "postgres":
        from projections.queries_postgres import PostgresRunQueries  # noqa: PLC0415 - see above

        return PostgresRunQueries(datastore, table=TABLE)
    return SQLiteRunQueries(cast(SQLiteDatastore, datastore), table=TABLE)
