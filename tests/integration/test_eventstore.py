"""The PostgreSQL recorder that sends each insert in one round trip
(infrastructure/eventstore.py): the library's table lock and NOTIFY kept, values bound
safely on the client, a refused insert leaving nothing behind and its connection usable."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from infrastructure.application import Ledger
from infrastructure.eventstore import OneTripRecorder
from tests.conftest import reset_postgres

HOSTILE = "it's; DROP TABLE runledger_events; -- \\x00 ünï"


@pytest.fixture
def recorder(postgres_database: str) -> Iterator[OneTripRecorder]:
    reset_postgres(postgres_database)
    with Ledger(postgres_database) as ledger:
        assert isinstance(ledger.recorder, OneTripRecorder)
        yield ledger.recorder


def event(run_id: str, version: int, state: bytes = b"{}") -> StoredEvent:
    return StoredEvent(run_id, version, "domain.events:RunStarted", state)


def test_inserts_return_their_notification_ids_and_store_the_values_as_given(
    recorder: OneTripRecorder,
) -> None:
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
    recorder: OneTripRecorder,
) -> None:
    recorder.insert_events([event("run_1", 1)])

    with pytest.raises(IntegrityError):
        recorder.insert_events([event("run_2", 1), event("run_1", 1)])
    for _ in range(8):  # every pooled connection is usable again
        recorder.insert_events([event(f"run_{time.monotonic_ns()}", 1)])

    assert recorder.select_events("run_2") == []
    assert recorder.max_notification_id() == 1 + 2 + 8  # the refused insert spent two ids


def test_an_insert_waits_for_the_table_lock_and_notifies_listeners(
    recorder: OneTripRecorder, postgres_database: str
) -> None:
    with (
        psycopg.connect(postgres_database, autocommit=True) as listener,
        psycopg.connect(postgres_database) as holder,
    ):
        listener.execute(f"LISTEN {recorder.channel_name}")
        holder.execute("LOCK TABLE runledger_events IN EXCLUSIVE MODE")  # a writer, mid-commit
        done = threading.Event()

        def write() -> None:
            recorder.insert_events([event("run_1", 1)])
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        waited = not done.wait(0.3)
        holder.rollback()
        writer.join(10)
        notified = list(listener.notifies(timeout=5, stop_after=1))

    assert waited
    assert done.is_set()
    assert [n.channel for n in notified] == [recorder.channel_name]
