"""`runledger history`, `export` and `import` as a user runs them, on every backend."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from domain import payload
from tests.builders import at, audit_trail, command, create
from tests.conftest import reset_postgres
from tests.e2e.conftest import Cli, Result, rejected

SEED = [
    create(at=at(0), input={"cart": [1, 2]}),
    command("start", at=at(60), actor="agent_7"),
    command("wait", at=at(90), reason="approval\n\x1b[31mred"),
    command("resume", at=at(120)),
    command("complete", at=at(180), output={"total": 42}, idempotencyKey="end-1"),
]
"""run_1 from creation to completion, with an actor, a key and a reason a terminal would obey."""


FINAL_PROGRESS = r"{label} \[#+\] 5,100/5,100 events 100%  [\d,]+ events/s  \d+\.\ds"
"""The line a progress bar ends with: counts, share, rate and time."""


SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
"""For what does not depend on the backend; PostgreSQL has the round trip and the rest."""


def seeded(cli: Cli, commands: list[dict[str, Any]]) -> None:
    """Applies the commands, written with payload.dumps so that exact numbers stay exact."""
    result = cli("apply", stdin=b"".join(payload.dumps(c).encode() + b"\n" for c in commands))
    assert (result.returncode, result.stderr) == (0, ""), result


def succeeded(result: Result) -> Result:
    assert (result.returncode, result.stderr) == (0, ""), result
    return result


def without_recorded_at(text: str) -> str:
    return re.sub(r'"recordedAt":"[^"]*",', "", text)


def test_history_as_a_table_prints_an_aligned_row_an_event_with_control_characters_escaped(
    runledger: Cli,
) -> None:
    seeded(runledger, SEED)

    result = succeeded(runledger("history", "run_1", "--format", "table"))

    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "VERSION", "EVENT", "STATUS", "AT", "RECORDED", "AT", "ACTOR", "REASON", "KEY", "DETAILS",
    ]  # fmt: skip
    assert len(rows) == len(SEED)
    moments = [at(0), at(60), at(90), at(120), at(180)]
    assert [row.index(moment) for row, moment in zip(rows, moments, strict=True)] == [
        header.index(" AT ") + 1
    ] * len(SEED)
    assert [row.split()[:2] for row in rows] == [
        ["1", "create"], ["2", "start"], ["3", "wait"], ["4", "resume"], ["5", "complete"],
    ]  # fmt: skip
    assert "pending -> running" in rows[1]
    assert "agent_7" in rows[1]
    assert "approval\\n\\x1b[31mred" in rows[2]
    assert "\x1b" not in result.stdout
    assert 'output={"total":42}' in rows[4]
    assert "end-1" in rows[4]


def test_history_prints_json_lines_by_default_and_with_format_json(runledger: Cli) -> None:
    seeded(runledger, SEED)

    default = succeeded(runledger("history", "run_1"))
    as_json = succeeded(runledger("history", "run_1", "--format", "json"))

    assert default.stdout == as_json.stdout
    assert [entry["event"] for entry in default.lines()] == [c["command"] for c in SEED]


def test_a_round_trip_from_sqlite_to_postgresql_and_back_gives_the_same_file_views_and_histories(
    tmp_path: Path, postgres_database: str
) -> None:
    reset_postgres(postgres_database)
    ledgers = [
        Cli(cwd=tmp_path, db=f"sqlite:///{tmp_path / 'first.db'}"),
        Cli(cwd=tmp_path, db=postgres_database),
        Cli(cwd=tmp_path, db=f"sqlite:///{tmp_path / 'third.db'}"),
    ]
    seeded(ledgers[0], audit_trail())
    exports = [succeeded(ledgers[0]("export")).stdout]
    (tmp_path / "first.jsonl").write_text(exports[0], encoding="utf-8")

    succeeded(ledgers[1]("import", "first.jsonl"))
    exports.append(succeeded(ledgers[1]("export")).stdout)
    succeeded(ledgers[2]("import", "-", stdin=exports[1].encode()))
    exports.append(succeeded(ledgers[2]("export")).stdout)

    assert exports[0].count("\n") == len(audit_trail())  # U+2028 inside a line splits no line
    assert without_recorded_at(exports[0]) == without_recorded_at(exports[1])
    assert without_recorded_at(exports[1]) == without_recorded_at(exports[2])
    shown = {succeeded(cli("show", "run_a", "--extended")).stdout for cli in ledgers}
    assert len(shown) == 1, shown  # every run's view and history: tests/integration/test_audit.py
    histories = [succeeded(cli("history", "run_a")).lines() for cli in ledgers]
    for entries in histories:
        for entry in entries:
            del entry["recordedAt"]
            entry.pop("firstRecordedAt", None)
    assert histories[0] == histories[1] == histories[2]
    for cli in ledgers:
        succeeded(cli("project"))
        assert succeeded(cli("verify")).json()["disagreements"] == 0


def test_a_tampered_export_line_is_refused_naming_its_run_and_version(
    runledger: Cli, tmp_path: Path
) -> None:
    seeded(runledger, SEED)
    exported = succeeded(runledger("export")).stdout
    tampered = exported.replace('"output":{"total":42}', '"output":{"total":43}')
    (tmp_path / "tampered.jsonl").write_text(tampered, encoding="utf-8")

    result = runledger("import", "tampered.jsonl")

    assert rejected(result) == "conflict"
    message = payload.loads(result.stderr)["error"]["message"]
    assert message.startswith("line 5, position 5 (run 'run_1', version 5): ")
    assert "differs in output" in message
    assert succeeded(runledger("export")).stdout == exported


@SQLITE_ONLY
def test_a_malformed_line_stops_the_import_as_invalid_after_the_lines_before_it(
    runledger: Cli,
) -> None:
    seeded(runledger, SEED[:1])
    good = succeeded(runledger("export")).stdout.replace("run_1", "run_2")

    result = runledger("import", "-", stdin=good + "{not json\n")

    assert rejected(result) == "invalid"
    assert "line 2" in payload.loads(result.stderr)["error"]["message"]
    assert [entry["version"] for entry in runledger.history("run_2")] == [1]


@SQLITE_ONLY
def test_an_import_file_that_cannot_be_read_is_invalid(runledger: Cli) -> None:
    assert rejected(runledger("import", "missing.jsonl")) == "invalid"


def test_an_import_prints_how_many_events_it_read_imported_and_found_already_present(
    runledger: Cli,
) -> None:
    seeded(runledger, SEED)
    exported = succeeded(runledger("export")).stdout

    again = succeeded(runledger("import", "-", stdin=exported))
    empty = succeeded(runledger("import", "-", stdin=""))

    assert again.json() == {"events": len(SEED), "imported": 0, "alreadyPresent": len(SEED)}
    assert empty.json() == {"events": 0, "imported": 0, "alreadyPresent": 0}


def test_export_keeps_one_workspace_or_the_events_recorded_since_a_moment(
    runledger: Cli,
) -> None:
    seeded(runledger, audit_trail())
    everything = succeeded(runledger("export")).lines()
    middle = everything[len(everything) // 2]["recordedAt"]

    workspace = succeeded(runledger("export", "--workspace-id", "ws_2")).lines()
    since = succeeded(runledger("export", "--since", middle)).lines()

    assert {line["runId"] for line in workspace} == {"run_c", "run_d", "run_e"}
    assert since == [line for line in everything if line["recordedAt"] >= middle]
    assert rejected(runledger("export", "--since", "yesterday")) == "invalid"
    assert rejected(runledger("export", "--workspace-id", "ws 2")) == "invalid"


def many_runs(count: int) -> str:
    """An export of `count` runs, each created, started and completed: 3 lines a run."""
    lines = []
    for n in range(count):
        run = {"schemaVersion": 1, "runId": f"run_{n}", "at": at(n)}
        lines.append({**create(f"run_{n}"), **run, "version": 1, "event": "create"})
        lines.append({**run, "version": 2, "event": "start"})
        lines.append({**run, "version": 3, "event": "complete", "output": n})
    for line in lines:
        line.pop("command", None)
    return "".join(payload.dumps(line) + "\n" for line in lines)


def test_progress_goes_to_standard_error_for_thousands_of_events_when_asked_for(
    tmp_path: Path,
) -> None:
    cli = Cli(cwd=tmp_path, db=f"sqlite:///{tmp_path / 'ledger.db'}")
    (tmp_path / "runs.jsonl").write_text(many_runs(1700), encoding="utf-8")

    loud_import = cli("import", "runs.jsonl", "--progress")
    quiet = cli("export")
    loud = cli("export", "--progress")

    assert loud_import.returncode == 0
    assert re.fullmatch(FINAL_PROGRESS.format(label="import"), loud_import.stderr.split("\n")[-2])
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert (loud.returncode, loud.stdout) == (0, quiet.stdout)
    assert re.fullmatch(FINAL_PROGRESS.format(label="export"), loud.stderr.split("\n")[-2])


@SQLITE_ONLY
def test_as_known_at_on_an_imported_ledger_reads_its_own_clock_and_as_of_the_sources(
    runledger: Cli, tmp_path: Path
) -> None:
    source = Cli(cwd=tmp_path, db=f"sqlite:///{tmp_path / 'source.db'}")
    seeded(source, SEED)
    exported = succeeded(source("export")).stdout
    first_recorded = source.history("run_1")[-1]["recordedAt"]

    succeeded(runledger("import", "-", stdin=exported))

    as_of = succeeded(runledger("show", "run_1", "--as-of", at(100))).json()
    assert (as_of["status"], as_of["updatedAt"]) == ("waiting", at(90))
    assert rejected(runledger("show", "run_1", "--as-known-at", first_recorded)) == "not_found"
    entries = runledger.history("run_1")
    assert entries[-1]["firstRecordedAt"] == first_recorded
    assert entries[-1]["recordedAt"] > first_recorded
