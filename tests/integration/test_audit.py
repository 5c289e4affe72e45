"""Audit and replay against the real application, on SQLite and PostgreSQL: the view as of a
moment, export and import (infrastructure/exchange.py, export.py, importer.py)."""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import payload, timestamps
from domain.errors import RunLedgerError, RunNotFound
from domain.events import RunEvent
from infrastructure import export, import_lines
from infrastructure.application import Ledger
from infrastructure.cli import build_parser
from infrastructure.importer import Importer, ImportSummary
from projections import history
from projections.fold import fold, to_extended, to_view
from tests import strategies
from tests.builders import AUDIT_RUNS, FakeClock, at, audit_trail, command, create, nested_json
from tests.conftest import reset_postgres

LONE = b',"reason":"\\ud800"}'
"""The end of a line whose reason is a lone UTF-16 surrogate, which no text can hold."""

DROP = object()
"""A field value that leaves the field out of the line."""


def exported(ledger: Ledger, **options: Any) -> bytes:
    out = io.BytesIO()
    export.export(ledger, out, **options)
    return out.getvalue()


def imported(ledger: Ledger, data: bytes, **options: Any) -> ImportSummary:
    lines = import_lines.read_lines(io.BytesIO(data))
    return Importer(ledger, **options).run(lines)


def rejected_import(ledger: Ledger, data: bytes, **options: Any) -> RunLedgerError:
    with pytest.raises(RunLedgerError) as caught:
        imported(ledger, data, **options)
    return caught.value


def without_recorded_at(data: bytes) -> bytes:
    return re.sub(rb'"recordedAt":"[^"]*",', b"", data)


def submitted(ledger: Ledger, commands: list[dict[str, Any]]) -> None:
    for item in commands:
        ledger.submit(item)


def views(ledger: Ledger) -> dict[str, str]:
    return {run_id: to_extended(ledger.state(run_id)).to_json() for run_id in AUDIT_RUNS}


def histories(ledger: Ledger) -> dict[str, list[dict[str, Any]]]:
    """Each run's history, without the times a ledger recorded the events."""
    return {
        run_id: [
            {k: v for k, v in entry.items() if k not in ("recordedAt", "firstRecordedAt")}
            for entry in history.entries(ledger.history(run_id))
        ]
        for run_id in AUDIT_RUNS
    }


def shown(ledger: Ledger, *argv: str) -> str:
    """What `runledger show ARGV...` prints, run on this ledger."""
    args: argparse.Namespace = build_parser().parse_args(["show", *argv])
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(out):
        args.handler(ledger, args)
    return out.buffer.getvalue().decode()


def folded(events: list[RunEvent], *, extended: bool) -> str:
    state = fold(events)
    view = to_extended(state) if extended else to_view(state)
    return payload.dumps(view.to_json_dict()) + "\n"


def event_line(event: str, version: int, run_id: str = "run_1", **fields: Any) -> dict[str, Any]:
    """An export line written by hand: `at` is at(version); DROP leaves a field out."""
    line: dict[str, Any] = {"schemaVersion": 1, "runId": run_id, "version": version}
    line |= {"event": event, "at": at(version)}
    if event == "create":
        line |= {"workspaceId": "ws_1", "subjectId": "wf_checkout", "userId": "user_1"}
    if event == "fail":
        line["error"] = "boom"
    line |= fields
    return {key: value for key, value in line.items() if value is not DROP}


def file_of(*lines: dict[str, Any] | bytes) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else payload.dumps(line).encode()) + b"\n"
        for line in lines
    )


# As of a moment -----------------------------------------------------------------------------

as_of_settings = settings(max_examples=max(10, settings().max_examples // 2))
"""Half the profile's examples: each one reads the view at every event, twice."""

recorded_gaps = st.lists(st.integers(min_value=0, max_value=3), min_size=14, max_size=14)
"""Seconds the ledger's clock moves before each command (zero included: equal times)."""


def run_ids() -> Iterator[str]:
    return (f"run_{n}" for n in itertools.count())


def recorded_history(
    ledger: Ledger, clock: FakeClock, run_id: str, lines: list[dict[str, Any]], gaps: list[int]
) -> list[RunEvent]:
    for line, gap in zip(lines, gaps, strict=False):
        clock.advance(gap)
        ledger.submit({**line, "runId": run_id})
    return ledger.history(run_id)


MOMENTS: list[Any] = [
    pytest.param("--as-of", lambda event: event.at, id="as-of-each-at"),
    pytest.param("--as-known-at", lambda event: event.timestamp, id="as-known-at-each-record"),
]
"""The option, and the moment of an event it reads by: its `at`, or when it was recorded."""


@pytest.mark.parametrize(("option", "moment_of"), MOMENTS)
def test_at_each_events_moment_the_view_is_the_fold_of_the_events_up_to_it(
    ledger: Ledger, clock: FakeClock, option: str, moment_of: Callable[[RunEvent], datetime]
) -> None:
    """`--as-of` reads by each event's `at`, `--as-known-at` by when it was recorded;
    events at the same moment count as before it."""
    ids = run_ids()

    @as_of_settings
    @given(lines=strategies.lifecycles(), gaps=recorded_gaps)
    def at_every_moment(lines: list[dict[str, Any]], gaps: list[int]) -> None:
        run_id = next(ids)
        events = recorded_history(ledger, clock, run_id, lines, gaps)

        for event in events:
            upto = [e for e in events if moment_of(e) <= moment_of(event)]
            for extended in (False, True):
                flags = ["--extended"] * extended
                moment = timestamps.to_iso(moment_of(event))
                printed = shown(ledger, run_id, option, moment, *flags)
                assert printed == folded(upto, extended=extended)
        before = timestamps.to_iso(moment_of(events[0]) - timedelta(milliseconds=1))
        with pytest.raises(RunNotFound):
            shown(ledger, run_id, option, before)

    at_every_moment()


# Export and import ----------------------------------------------------------------------------


def test_a_round_trip_from_sqlite_to_postgresql_and_back_keeps_every_view_and_history(
    tmp_path: Path, postgres_database: str, clock: FakeClock
) -> None:
    reset_postgres(postgres_database)
    urls = [f"sqlite:///{tmp_path / 'first.db'}", postgres_database]
    urls.append(f"sqlite:///{tmp_path / 'third.db'}")
    files: list[bytes] = []
    seen_views: list[dict[str, str]] = []
    seen_histories: list[dict[str, list[dict[str, Any]]]] = []

    for hop, url in enumerate(urls):
        with Ledger(url, clock=clock) as ledger:
            if hop == 0:
                submitted(ledger, audit_trail())
            else:
                clock.advance(3600)
                imported(ledger, files[-1])
            files.append(exported(ledger))
            seen_views.append(views(ledger))
            seen_histories.append(histories(ledger))

    assert without_recorded_at(files[0]) == without_recorded_at(files[1])
    assert without_recorded_at(files[1]) == without_recorded_at(files[2])
    assert files[0] != files[1] != files[2]  # each ledger recorded the events at its own time
    assert seen_views[0] == seen_views[1] == seen_views[2]
    assert seen_histories[0] == seen_histories[1] == seen_histories[2]


def test_an_export_imported_into_an_empty_ledger_exports_the_same_apart_from_recorded_times(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    submitted(ledger, audit_trail())
    first = exported(ledger)

    with Ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock) as copy:
        clock.advance(60)
        summary = imported(copy, first)
        second = exported(copy)

    events = len(audit_trail())
    assert summary.to_json_dict() == {"events": events, "imported": events, "alreadyPresent": 0}
    assert without_recorded_at(second) == without_recorded_at(first)
    assert b'"input":{"amount":1.10,' in first
    assert b'"total":1E+5,"items":[1,2.5,3.14159265358979323846]' in first


def test_imported_events_keep_at_actor_reason_and_key_and_the_first_recorded_time(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    submitted(ledger, audit_trail())
    source = list(history.entries(ledger.history("run_a")))

    with Ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock) as copy:
        clock.advance(60)
        imported(copy, exported(ledger))
        copied = list(history.entries(copy.history("run_a")))

    for theirs, ours in zip(source, copied, strict=True):
        assert ours["firstRecordedAt"] == theirs["recordedAt"]
        assert ours["recordedAt"] == timestamps.to_iso(clock.now)
        for key in ("at", "actor", "reason", "idempotencyKey", "statusBefore", "statusAfter"):
            assert ours[key] == theirs[key]


def test_importing_what_the_ledger_already_holds_skips_every_event(ledger: Ledger) -> None:
    submitted(ledger, audit_trail())
    data = exported(ledger)

    summary = imported(ledger, data)

    events = len(audit_trail())
    assert summary.to_json_dict() == {"events": events, "imported": 0, "alreadyPresent": events}
    assert exported(ledger) == data


def test_a_tampered_line_is_refused_naming_its_run_and_version_and_nothing_from_it_is_written(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    submitted(ledger, audit_trail())
    lines = exported(ledger).splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if b'"event":"complete"' in line)
    tampered = [*lines[:target], lines[target].replace(b"1E+5", b"2E+5"), *lines[target + 1 :]]

    with Ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock) as copy:
        imported(copy, b"".join(lines[:target]))
        clock.advance(60)
        imported(copy, b"".join(lines[target : target + 1]))
        before = exported(copy)
        error = rejected_import(copy, b"".join(tampered))
        after = exported(copy)

    assert error.code == "conflict"
    assert error.message.startswith(f"line {target + 1}, position {target + 1} ")
    assert "(run 'run_a', version 6)" in error.message
    assert "differs in output" in error.message
    assert after == before


def base() -> list[dict[str, Any]]:
    """run_1 created and started, as a hand-written export."""
    return [event_line("create", 1), event_line("start", 2)]


def far_ahead() -> str:
    return timestamps.to_iso(FakeClock().now + timedelta(minutes=6))


REJECTED_LINES: dict[str, tuple[list[dict[str, Any] | bytes], str]] = {
    "a transition not allowed from the status before": (
        [event_line("resume", 3)],
        "illegal_transition",
    ),
    "at earlier than the run's latest event": ([event_line("wait", 3, at=at(1.5))], "out_of_order"),
    "at over 5 minutes ahead of this ledger's clock": (
        [event_line("wait", 3, at=far_ahead())],
        "invalid",
    ),
    "a gap in the versions": ([event_line("wait", 4)], "invalid"),
    "a create that is not version 1": ([event_line("create", 2, run_id="run_2")], "invalid"),
    "a transition as version 1": ([event_line("start", 1, run_id="run_2")], "invalid"),
    "a create for an existing run, different": (
        [event_line("create", 1, subjectId="wf_other")],
        "conflict",
    ),
    "a recorded transition, different": ([event_line("start", 2, actor="someone")], "conflict"),
    "an idempotency key used twice": (
        [event_line("wait", 3, idempotencyKey="k"), event_line("resume", 4, idempotencyKey="k")],
        "conflict",
    ),
    "a second link to another workflow": (
        [
            event_line("linkCfWorkflow", 3, cfWorkflowId="cf_1"),
            event_line("linkCfWorkflow", 4, cfWorkflowId="cf_2"),
        ],
        "conflict",
    ),
    "the same link twice": (
        [
            event_line("linkCfWorkflow", 3, cfWorkflowId="cf_1"),
            event_line("linkCfWorkflow", 4, cfWorkflowId="cf_1"),
        ],
        "conflict",
    ),
    "a parent in another workspace": (
        [event_line("create", 1, run_id="run_2", workspaceId="ws_2", parentRunId="run_1")],
        "invalid",
    ),
    "a parent that does not exist": (
        [event_line("create", 1, run_id="run_2", parentRunId="run_404")],
        "invalid",
    ),
    "a malformed identifier": ([event_line("create", 1, run_id="run 2")], "invalid"),
    "a payload nested too deep": (
        [event_line("create", 1, run_id="run_2", input=payload.loads(nested_json(101)))],
        "invalid",
    ),
    "U+0000 in a text": ([event_line("wait", 3, reason="a\x00b")], "invalid"),
    "a lone surrogate": ([payload.dumps(event_line("wait", 3))[:-1].encode() + LONE], "invalid"),
    "an unknown key": ([event_line("wait", 3, colour="red")], "invalid"),
    "a field of another event": ([event_line("start", 3, output=1)], "invalid"),
    "a fail without its error": ([event_line("fail", 3, error=DROP)], "invalid"),
    "a create with an actor": ([event_line("create", 1, run_id="run_2", actor="x")], "invalid"),
    "no at": ([event_line("wait", 3, at=DROP)], "invalid"),
    "a later schema version": ([event_line("wait", 3, schemaVersion=2)], "invalid"),
    "no schema version": ([event_line("wait", 3, schemaVersion=DROP)], "invalid"),
    "an eventType that is not the event's": (
        [event_line("wait", 3, eventType="RunPaused")],
        "invalid",
    ),
    "a version that is not a whole number": (
        [{**event_line("wait", 3), "version": "3"}],
        "invalid",
    ),
    "not JSON": ([b"{not json"], "invalid"),
    "not an object": ([b"[1,2]"], "invalid"),
    "not UTF-8": ([b'{"schemaVersion":1,"reason":"\xff"}'], "invalid"),
    "a line over the size limit": ([b"x" * (import_lines.LINE_LIMIT + 10)], "too_large"),
}


ON_EVERY_BACKEND = ["a transition not allowed from the status before", "a gap in the versions"]
ON_EVERY_BACKEND += ["a recorded transition, different", "a parent in another workspace"]
"""The rules are the domain's, the same on every backend: the whole table runs on SQLite,
these on PostgreSQL as well."""


@pytest.mark.parametrize(
    ("backend", "case"),
    [("sqlite", case) for case in REJECTED_LINES]
    + [("postgres", case) for case in ON_EVERY_BACKEND],
)
def test_an_import_obeys_every_rule_a_live_command_does(ledger: Ledger, case: str) -> None:
    lines, code = REJECTED_LINES[case]
    base_lines = base()

    error = rejected_import(ledger, file_of(*base_lines, *lines))

    rejected_line = len(base_lines) + len(lines)  # the last: those before it are valid
    assert error.code == code, error.message
    assert error.message.startswith(f"line {rejected_line}"), error.message
    assert len(ledger.history("run_1")) == rejected_line - 1
    with pytest.raises(RunNotFound):
        ledger.history("run_2")


def test_the_import_stops_at_the_first_rejected_line_with_every_line_before_it_written(
    ledger: Ledger,
) -> None:
    good = [
        line
        for n in range(1, 5)
        for line in (event_line("create", 1, f"run_{n}"), event_line("start", 2, f"run_{n}"))
    ]
    bad = event_line("complete", 3, "run_2", at=at(0))

    error = rejected_import(ledger, file_of(*good[:7], bad, good[7]), batch_events=3)

    assert (error.code, error.message.split(" (")[0]) == ("out_of_order", "line 8")
    assert "nothing from line 8 on was written" in error.message
    assert "(7 imported, 0 already present)" in error.message
    assert [len(ledger.history(f"run_{n}")) for n in (1, 2, 3)] == [2, 2, 2]
    assert len(ledger.history("run_4")) == 1


def test_running_a_fixed_import_again_goes_on_from_the_line_that_was_rejected(
    ledger: Ledger,
) -> None:
    lines = [event_line("create", 1), event_line("start", 2), event_line("wait", 3)]
    lines += [event_line("resume", 4), event_line("complete", 5, output={"ok": True})]
    broken = [*lines[:3], {**lines[3], "event": "complete"}, lines[4]]
    rejected_import(ledger, file_of(*broken), batch_events=2)

    summary = imported(ledger, file_of(*lines), batch_events=2)

    assert summary.to_json_dict() == {"events": 5, "imported": 2, "alreadyPresent": 3}
    assert to_view(ledger.state("run_1")).status == "completed"


def test_an_import_remembering_one_run_at_a_time_reads_the_others_back_and_does_the_same(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    submitted(ledger, audit_trail())
    data = exported(ledger)

    with Ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock) as copy:
        first = Importer(copy, batch_events=2, cached_runs=1)
        first.run(import_lines.read_lines(io.BytesIO(data)))
        again = Importer(copy, batch_events=2, cached_runs=1)
        again.run(import_lines.read_lines(io.BytesIO(data)))

        assert without_recorded_at(exported(copy)) == without_recorded_at(data)
        assert views(copy) == views(ledger)
    assert (first.summary.imported, again.summary.already_present) == (len(audit_trail()),) * 2
    assert len(again.runs.cache) <= 1 + len(again.runs.pinned)


def test_a_batch_that_loses_to_a_concurrent_writer_is_validated_again(
    ledger: Ledger, database_url: str, clock: FakeClock
) -> None:
    lines = [event_line("create", 1), event_line("start", 2), event_line("wait", 3)]
    with Ledger(database_url, clock=clock) as rival:
        rivals_commands = [create(at=at(1)), command("start", at=at(2))]

        def rival_writes_first() -> None:
            while rivals_commands:
                rival.submit(rivals_commands.pop(0))

        summary = imported(ledger, file_of(*lines), on_event=rival_writes_first)

    assert summary.to_json_dict() == {"events": 3, "imported": 1, "alreadyPresent": 2}
    assert [type(e).__name__ for e in ledger.history("run_1")] == [
        "RunCreated",
        "RunStarted",
        "RunWaited",
    ]


def test_an_export_for_one_workspace_holds_its_runs_only_and_imports_on_its_own(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    submitted(ledger, audit_trail())

    data = exported(ledger, workspace_id="ws_1")

    runs = {payload.loads(line.decode())["runId"] for line in data.splitlines()}
    assert runs == {"run_a", "run_b"}
    with Ledger(f"sqlite:///{tmp_path / 'ws_1.db'}", clock=clock) as copy:
        imported(copy, data)
        assert to_extended(copy.state("run_b")).to_json() == views(ledger)["run_b"]
        with pytest.raises(RunNotFound):
            copy.history("run_c")


def test_exports_since_a_moment_carry_a_copy_forward_from_where_it_was(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    trail = audit_trail()
    submitted(ledger, trail[:10])
    earlier = exported(ledger)
    clock.advance(60)
    since: datetime = clock.now
    submitted(ledger, trail[10:])

    later = exported(ledger, since=since)

    recorded = [payload.loads(line.decode())["recordedAt"] for line in later.splitlines()]
    assert len(recorded) == len(trail[10:])
    assert min(recorded) >= timestamps.to_iso(since)
    with Ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock) as copy:
        imported(copy, earlier)
        imported(copy, later)
        assert without_recorded_at(exported(copy)) == without_recorded_at(exported(ledger))
