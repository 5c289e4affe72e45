"""The recorders that insert through one writer connection each (infrastructure/eventstore_*.py),
on both backends: values stored as given, a refused insert leaving nothing behind and the
writer usable, a writer waiting its turn behind another; on PostgreSQL, each insert in one
round trip with the library's table lock and NOTIFY, and a broken writer replaced."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from infrastructure.application import Ledger
from infrastructure.eventstore_postgres import ARRAYS_FROM, OneTripRecorder
from infrastructure.eventstore_sqlite import OneWriterSQLiteRecorder
from tests.conftest import reset_postgres

HOSTILE = "it's; DROP TABLE runledger_events; -- \\x00 ünï"

Writer = OneTripRecorder | OneWriterSQLiteRecorder


@pytest.fixture
def writer(database_url: str) -> Iterator[Writer]:
    with Ledger(database_url) as ledger:
        assert isinstance(ledger.recorder, OneTripRecorder | OneWriterSQLiteRecorder)
        yield ledger.recorder


@pytest.fixture
def recorder(postgres_database: str) -> Iterator[OneTripRecorder]:
    reset_postgres(postgres_database)
    with Ledger(postgres_database) as ledger:
        assert isinstance(ledger.recorder, OneTripRecorder)
        yield ledger.recorder


def event(run_id: str, version: int, state: bytes = b"{}") -> StoredEvent:
    return StoredEvent(run_id, version, "domain.events:RunStarted", state)


def insert_behind(recorder: Writer, release: Callable[[], object]) -> tuple[bool, bool]:
    """Inserts `run_1` from another thread while something else holds the write lock, then
    `release`s it: whether the insert was still waiting after 0.3 s, and whether it then
    went through."""
    done = threading.Event()

    def write() -> None:
        recorder.insert_events([event("run_1", 1)])
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    waited = not done.wait(0.3)
    release()
    writer.join(10)
    return waited, done.is_set()


def test_inserts_return_their_notification_ids_and_store_the_values_as_given(
    writer: Writer,
) -> None:
    recorder = writer
    first = recorder.insert_events([event("run_1", 1), event("run_1", 2, b"\x00'\\\xff")])
    second = recorder.insert_events([event(HOSTILE, 1, HOSTILE.encode())])

    assert first is not None
    assert len(first) == 2
    assert first[1] == first[0] + 1
    assert second == [first[1] + 1]
    stored = recorder.select_events("run_1")
    assert [(e.originator_version, e.state) for e in stored] == [(1, b"{}"), (2, b"\x00'\\\xff")]
    assert [e.state for e in recorder.select_events(HOSTILE)] == [HOSTILE.encode()]
    assert recorder.insert_events([]) == []


def test_a_refused_insert_stores_none_of_its_events_and_the_next_one_goes_through(
    writer: Writer,
) -> None:
    recorder = writer
    recorder.insert_events([event("run_1", 1)])

    with pytest.raises(IntegrityError):
        recorder.insert_events([event("run_2", 1), event("run_1", 1)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([event("run_1", 1, b"again")])
    ids = [list(recorder.insert_events([event(f"run_{n}", 1)]) or ()) for n in range(3, 11)]

    assert recorder.select_events("run_2") == []
    assert [e.originator_id for e in recorder.select_events("run_10")] == ["run_10"]
    assert all(len(one) == 1 for one in ids)
    assert [one[0] for one in ids] == sorted({one[0] for one in ids})  # rising, all different


def test_a_large_insert_stores_every_value_as_given_and_a_refused_one_stores_nothing(
    writer: Writer,
) -> None:
    # On PostgreSQL, from ARRAYS_FROM events the values go as binary arrays.
    recorder = writer
    states = [bytes(range(n % 256)) + HOSTILE.encode() for n in range(ARRAYS_FROM + 5)]
    run_ids = [f"{HOSTILE} {n}" for n in range(len(states))]
    big = [event(run_id, 1, state) for run_id, state in zip(run_ids, states, strict=True)]

    ids = recorder.insert_events(big)
    with pytest.raises(IntegrityError):
        recorder.insert_events([event(f"run_{n}", 1) for n in range(ARRAYS_FROM)] + big[-1:])
    after = recorder.insert_events([event("run_after", n) for n in range(1, ARRAYS_FROM + 1)])

    assert ids is not None
    assert after is not None
    assert list(ids) == list(range(ids[0], ids[0] + len(big)))
    assert list(after) == list(range(after[0], after[0] + ARRAYS_FROM))
    assert after[0] > ids[-1]
    stored = {e.originator_id: e for run_id in run_ids for e in recorder.select_events(run_id)}
    assert [(stored[r].originator_version, stored[r].state) for r in run_ids] == [
        (1, state) for state in states
    ]
    assert stored[run_ids[0]].topic == "domain.events:RunStarted"
    assert recorder.select_events("run_0") == []
    assert len(recorder.select_events("run_after")) == ARRAYS_FROM


def test_a_sqlite_writer_waits_its_turn_behind_another_connections_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as ledger:
        recorder = ledger.recorder
        assert isinstance(recorder, OneWriterSQLiteRecorder)
        recorder.insert_events([event("run_0", 1)])
        holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's writer, mid-transaction

        waited, done = insert_behind(recorder, lambda: holder.execute("COMMIT"))
        holder.close()

        assert waited
        assert done
        assert [e.originator_version for e in recorder.select_events("run_1")] == [1]


@pytest.mark.parametrize("size", [1, ARRAYS_FROM])
def test_a_broken_writer_connection_is_replaced_and_the_insert_goes_through(
    recorder: OneTripRecorder, postgres_database: str, size: int
) -> None:
    recorder.insert_events([event("run_1", 1)])
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'BEGIN; SET LOCAL lock_timeout%%'"
        ).fetchall()

    ids = recorder.insert_events([event("run_2", n) for n in range(1, size + 1)])

    assert killed == [(True,)]
    assert ids is not None
    assert len(ids) == size
    assert [e.originator_version for e in recorder.select_events("run_2")] == list(
        range(1, size + 1)
    )


def test_an_insert_waits_for_the_table_lock_and_notifies_listeners(
    recorder: OneTripRecorder, postgres_database: str
) -> None:
    with (
        psycopg.connect(postgres_database, autocommit=True) as listener,
        psycopg.connect(postgres_database) as holder,
    ):
        listener.execute(f"LISTEN {recorder.channel_name}")
        holder.execute("LOCK TABLE runledger_events IN EXCLUSIVE MODE")  # a writer, mid-commit

        waited, done = insert_behind(recorder, holder.rollback)
        notified = list(listener.notifies(timeout=5, stop_after=1))

    assert waited
    assert done
    assert [n.channel for n in notified] == [recorder.channel_name]
