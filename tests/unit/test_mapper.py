"""The ledger's mapper writes a run event's state out itself: it must write the very bytes
the library's JSON transcoder writes, and read back as the same event."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.eventstore import RunMapper
from tests import strategies
from tests.builders import T0, events_from

hostile_text = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)


def transcoder() -> JSONTranscoder:
    """The transcoder the ledger's application registers (the library's defaults)."""
    made = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        made.register(transcoding)
    return made


@given(
    strategies.interleaved_lifecycles(max_runs=1),
    hostile_text.filter(str.strip),
    st.none() | strategies.identifiers,
    st.none() | hostile_text,
    st.none() | strategies.identifiers,
    st.booleans(),
)
def test_a_run_event_is_stored_as_the_library_stores_it(
    lines: list[dict[str, Any]],
    error: str,
    actor: str | None,
    reason: str | None,
    key: str | None,
    imported: bool,
) -> None:
    ours, library = RunMapper(transcoder()), Mapper[str](transcoder())
    lines = [{**line, "error": error} if line["command"] == "fail" else line for line in lines]
    lines = [lines[0], *({**line, "actor": actor, "reason": reason} for line in lines[1:])]
    if key is not None:
        lines[-1] = {**lines[-1], "idempotencyKey": key}

    events = events_from(lines)
    if imported:
        events = [dataclasses.replace(cast(Any, e), first_recorded_at=T0) for e in events]
    for event in events:
        stored = ours.to_stored_event(event)

        assert stored == library.to_stored_event(event)
        assert library.to_domain_event(stored) == event


def test_a_mapper_that_compresses_goes_the_librarys_way() -> None:
    compressor = ZlibCompressor()
    ours, library = RunMapper(transcoder(), compressor), Mapper[str](transcoder(), compressor)
    (event,) = events_from([{"command": "create", "runId": "run_1", **CREATE}])

    assert ours.to_stored_event(event) == library.to_stored_event(event)


CREATE = {"workspaceId": "ws_1", "subjectId": "wf_1", "userId": "user_1", "input": {"n": 1.10}}
