"""PostgreSQL specifics of the write side.

The library creates its tables (and a function it would use only with the database functions,
which the ledger never enables) with `CREATE OR REPLACE` at every start. Processes starting
together then fail with "tuple concurrently updated", and every command-line call would write
to the catalogue. So the ledger's recorder and read model create their tables once, under an
advisory lock, only where they are missing. Also: a throwaway database, for test sessions and
benchmarks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from eventsourcing.postgres import PostgresRecorder
from psycopg import sql

_SCHEMA_LOCK = 0x72756E6C  # "runl": one advisory lock for the ledger's DDL


def create_tables_once(
    recorder: PostgresRecorder, *names: str, create: Callable[[], None] | None = None
) -> None:
    """Runs `create` (the recorder's `create_table()`) unless all its tables `names` exist."""
    datastore = recorder.datastore
    tables = [f"{datastore.schema or 'public'}.{name}" for name in names]
    with datastore.get_connection() as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            row = connection.execute(
                "SELECT bool_and(to_regclass(name) IS NOT NULL) AS present "
                "FROM unnest(%s::text[]) AS name",
                (tables,),
            ).fetchone()
            if row is None or not row["present"]:
                (create or recorder.create_table)()
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


@contextmanager
def throwaway_database(server_url: str, prefix: str) -> Iterator[str]:
    """A database of its own on the server (named `prefix`, the process and a random token),
    for a test session or a benchmark: yields its URL, and drops it afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
