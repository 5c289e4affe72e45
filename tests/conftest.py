"""Fixtures: the ledger on every backend (SQLite and a real PostgreSQL), and a fake clock.

PostgreSQL comes from RUNLEDGER_TEST_POSTGRES_URL (scripts/test finds or starts a server and
sets it), else 127.0.0.1:5432. The suite creates its own database and drops it at the end. A
missing server fails the PostgreSQL tests; it never skips them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg_pool.base
import pytest
from hypothesis import HealthCheck, settings

from infrastructure.application import Ledger
from infrastructure.postgres import throwaway_database
from tests.builders import FakeClock

settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# psycopg_pool's workers connect in the background and draw each connection's expiry jitter
# from the global `random`; when that happens during a hypothesis draw, hypothesis takes it
# for a strategy that uses `random` and warns (an error here). They get a generator of their own.
psycopg_pool.base.random = random.Random().random  # type: ignore[attr-defined]

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get(
        "RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute("select 1")
    except psycopg.Error as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {url} ({error}); run scripts/test, which finds or "
            "starts a server, or set RUNLEDGER_TEST_POSTGRES_URL",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url: str) -> Iterator[str]:
    """A database of the suite's own, dropped at the end of the session."""
    with throwaway_database(postgres_server_url, "runledger_test") as url:
        yield url


def reset_postgres(url: str) -> None:
    """Empties the suite's database between tests."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL to an empty ledger database on the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_database")
    reset_postgres(url)
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(database_url: str, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger(database_url, clock=clock) as app:
        yield app
