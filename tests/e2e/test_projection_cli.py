"""The read model's commands as an operator runs them: `project` (killed and restarted,
following writers, stopped by a poison event), `lag`, `wait-projection`, `verify`, `rebuild`.

Histories are seeded in process (tests/builders.py `record`, many runs a transaction); the
commands under test run as `runledger` processes.
"""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain import payload
from infrastructure import readmodel
from infrastructure.application import Ledger
from projections.readmodel import RunsView
from projections.rollup import COUNT_COLUMNS as COUNTS
from tests.builders import (
    FakeClock,
    at,
    behind_the_ledgers_back,
    command,
    create,
    differing_rows,
    insert_stored_event,
    opened_view,
    record,
    replayed_rows,
    stored_state,
    workday,
)
from tests.conftest import reset_postgres
from tests.e2e.conftest import RUNLEDGER, Cli, Result, rejected

PROCESS_TIMEOUT = 60.0
LAG_KEYS = ["position", "head", "behindEvents", "behindSeconds", "deadLetters"]


def small_history() -> list[dict[str, Any]]:
    """A completed run, a running run with an input, and a pending run: 6 events."""
    return [
        create("run_1", at=at(0)),
        create("run_2", at=at(1), input={"prompt": "hi", "n": 1}),
        command("start", "run_1", at=at(2)),
        command("start", "run_2", at=at(3)),
        command("complete", "run_1", at=at(5), output={"ok": True}),
        create("run_3", at=at(6)),
    ]


def seeded(url: str, lines: list[dict[str, Any]], clock: FakeClock | None = None) -> int:
    """Records the lines' events in process; returns the log's head."""
    with Ledger(url, clock=clock or FakeClock()) as ledger:
        record(ledger, lines)
        return ledger.recorder.max_notification_id() or 0


def projected(url: str, **options: Any) -> int:
    """Catches the read model up in process (to arrange what a command under test finds);
    returns its position."""
    with Ledger(url) as ledger, opened_view(ledger) as view:
        readmodel.projector(ledger, view, **options).run()
        return view.position()


def single_json(result: Result) -> Any:
    """The one JSON line a successful command printed."""
    assert result.returncode == 0, result
    lines = result.lines()
    assert len(lines) == 1, result
    return lines[0]


def stderr_error(result: Result) -> dict[str, str]:
    """The JSON error a failed command printed first on standard error (progress may follow)."""
    assert "Traceback" not in result.stderr, result.stderr
    printed = json.loads(result.stderr.split("\n", 1)[0])
    assert list(printed) == ["error"], printed
    assert sorted(printed["error"]) == ["code", "message"], printed
    return dict(printed["error"])


@contextmanager
def started(cwd: Path, url: str, *args: str, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """`runledger --db url args...` running in the background (output in files named after
    it); killed if still running at the end."""
    with (cwd / f"{name}.out").open("wb") as out, (cwd / f"{name}.err").open("wb") as err:
        process = subprocess.Popen(
            [str(RUNLEDGER), "--db", url, *args], cwd=cwd, stdout=out, stderr=err
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=PROCESS_TIMEOUT)


def output_of(cwd: Path, name: str) -> tuple[str, str]:
    return (cwd / f"{name}.out").read_text(), (cwd / f"{name}.err").read_text()


# project, lag, wait-projection ---------------------------------------------------------------


def test_project_twice_applies_nothing_the_second_time(runledger: Cli, database_url: str) -> None:
    recorded = seeded(database_url, small_history())

    first = single_json(runledger("project"))
    second = single_json(runledger("project"))

    assert (first["applied"], first["position"], first["behindEvents"]) == (recorded, recorded, 0)
    assert (second["applied"], second["position"], second["behindEvents"]) == (0, recorded, 0)


def test_lag_reports_the_events_and_seconds_behind_before_projecting_and_none_after(
    runledger: Cli, database_url: str
) -> None:
    an_hour_ago = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    recorded = seeded(database_url, small_history(), clock=an_hour_ago)

    before = single_json(runledger("lag"))
    projected(database_url)
    after = single_json(runledger("lag"))

    assert list(before) == LAG_KEYS
    assert (before["position"], before["head"], before["behindEvents"]) == (0, recorded, recorded)
    assert 3600 <= before["behindSeconds"] < 3600 + 600
    assert before["deadLetters"] == 0
    assert after == {
        "position": recorded,
        "head": recorded,
        "behindEvents": 0,
        "behindSeconds": 0.0,
        "deadLetters": 0,
    }


def test_wait_projection_times_out_with_a_json_error_when_nothing_projects(
    runledger: Cli, database_url: str
) -> None:
    recorded = seeded(database_url, small_history())

    result = runledger("wait-projection", "--timeout", "0.5")

    assert (result.returncode, result.stdout) == (1, "")
    error = stderr_error(result)
    assert error["code"] == "timeout"
    assert f"position {recorded}" in error["message"]


def test_wait_projection_returns_once_the_read_model_has_applied_the_position(
    runledger: Cli, database_url: str
) -> None:
    recorded = seeded(database_url, small_history())
    projected(database_url)

    latest = single_json(runledger("wait-projection", "--timeout", "5"))
    earlier = single_json(runledger("wait-projection", "--position", "2", "--timeout", "5"))

    assert latest == earlier
    assert (latest["position"], latest["behindEvents"]) == (recorded, 0)


def test_wait_projection_on_an_empty_ledger_has_nothing_to_wait_for(runledger: Cli) -> None:
    result = runledger("wait-projection", "--timeout", "1")

    assert result.returncode == 0, result
    assert single_json(result)["position"] == 0


@pytest.mark.parametrize(
    ("verb", "option", "given"),
    [
        ("wait-projection", "--timeout", "nan"),
        ("wait-projection", "--timeout", "inf"),
        ("wait-projection", "--timeout", "1e999"),
        ("wait-projection", "--timeout", "-1"),
        ("wait-projection", "--timeout", "86401"),
        ("wait-projection", "--timeout", "soon"),
        ("wait-projection", "--position", "-5"),
        ("wait-projection", "--position", "1.5"),
        ("wait-projection", "--position", str(2**63)),
        ("project", "--batch-size", "0"),
        ("project", "--batch-size", "-1"),
        ("project", "--batch-size", "10001"),
        ("rebuild", "--batch-size", "0"),
    ],
)
def test_a_number_out_of_its_options_range_is_refused_as_invalid_before_the_ledger_is_opened(
    run_cli: Cli, tmp_path: Path, verb: str, option: str, given: str
) -> None:
    result = run_cli(verb, option, given)

    assert rejected(result) == "invalid"
    message = json.loads(result.stderr)["error"]["message"]
    assert f"{option} must be" in message
    assert f"not {given!r}" in message
    assert not (tmp_path / "runledger.db").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["project", "--batch-size", "1"],
        ["rebuild", "--batch-size", "10000"],
        ["wait-projection", "--position", "0", "--timeout", "0"],
        ["wait-projection", "--timeout", "86400"],
    ],
)
def test_the_ends_of_each_options_range_are_accepted(run_cli: Cli, argv: list[str]) -> None:
    result = run_cli(*argv)

    assert (result.returncode, result.stderr) == (0, ""), result


# The read model's first opening (SQLite) -----------------------------------------------------

LOCK_HELD = 2.0
"""Seconds a writer keeps SQLite's write lock while the commands start and reach it."""
CREATE_OPTIONS = ["--workspace-id", "ws_1", "--subject-id", "wf_checkout", "--user-id", "user_1"]


def test_project_and_lag_making_the_read_models_tables_wait_for_a_writer_and_never_fail_at_once(
    tmp_path: Path,
) -> None:
    """Beside `create` processes on a fresh file, `project` and `lag` often failed at once with
    `database is locked`: the tables were made in a transaction that read, then wrote, and
    SQLite cannot wait to turn a read into a write. Racing by chance, they met a writer now and
    then; here a writer's transaction holds the lock while they start, so every one meets it
    (and the two make the tables at the same time)."""
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    seeded(url, [create("run_1", at=at(0))])  # the log's tables, but no read model yet
    commands = {"project": ["project"], "lag": ["lag"]}
    commands |= {f"create-{i}": ["create", *CREATE_OPTIONS] for i in range(2)}

    with closing(sqlite3.connect(path, isolation_level=None)) as writer, ExitStack() as running:
        writer.execute("BEGIN IMMEDIATE")
        processes = {
            name: running.enter_context(started(tmp_path, url, *argv, name=name))
            for name, argv in commands.items()
        }
        time.sleep(LOCK_HELD)
        writer.execute("COMMIT")
        exits = {name: process.wait(timeout=PROCESS_TIMEOUT) for name, process in processes.items()}

    outputs = {name: output_of(tmp_path, name) for name in commands}
    assert exits == dict.fromkeys(commands, 0), outputs
    assert all(err == "" for _, err in outputs.values()), outputs
    assert json.loads(outputs["project"][0])["position"] >= 1
    assert json.loads(outputs["lag"][0])["deadLetters"] == 0


# Progress -----------------------------------------------------------------------------------

PROGRESS_RUNS = 5100
"""Runs of one event each: past the 5,000 from which a log gets progress lines when asked."""
FINAL_PROGRESS = {
    "project": r"projecting \[#+\] 5,100/5,100 events 100%  [\d,]+ events/s  \d+\.\ds",
    "verify": r"verifying: 5,100 runs  [\d,]+ runs/s  \d+\.\ds",
    "rebuild": r"rebuilding \[#+\] 5,100/5,100 events 100%  [\d,]+ events/s  \d+\.\ds",
}
"""The line each command's progress ends with, in a log: counts, rate and time."""


def progress_of(tmp_path: Path, *option: str) -> dict[str, Result]:
    """`project`, `verify` and `rebuild` with the option on a SQLite ledger of PROGRESS_RUNS
    runs, standard error a file (not a terminal): their results by command."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    seeded(url, [create(f"run_{n}", at=at(n)) for n in range(PROGRESS_RUNS)])
    runledger = Cli(cwd=tmp_path, db=url)
    return {verb: runledger(verb, *option) for verb in FINAL_PROGRESS}


@pytest.mark.parametrize("option", [(), ("--no-progress",)], ids=["by-default", "no-progress"])
def test_project_verify_and_rebuild_print_no_progress_to_a_standard_error_not_a_terminal(
    tmp_path: Path, option: tuple[str, ...]
) -> None:
    results = progress_of(tmp_path, *option)

    assert {verb: (r.returncode, r.stderr) for verb, r in results.items()} == dict.fromkeys(
        FINAL_PROGRESS, (0, "")
    )
    assert single_json(results["verify"])["runs"] == PROGRESS_RUNS


def test_project_verify_and_rebuild_print_progress_lines_to_a_log_when_asked_for(
    tmp_path: Path,
) -> None:
    results = progress_of(tmp_path, "--progress")

    for verb, result in results.items():
        assert result.returncode == 0, result
        assert result.stderr.endswith("\n"), result
        assert re.fullmatch(FINAL_PROGRESS[verb], result.stderr.split("\n")[-2]), result
    assert results["project"].stderr.count("\n") == 4  # at each quarter, and at the end
    assert single_json(results["verify"])["runs"] == PROGRESS_RUNS


# Poison events ------------------------------------------------------------------------------


def poisoned(url: str) -> tuple[int, int]:
    """Records a start of a run never created (a poison event), then one good event after it.
    Returns the poison's position and the head."""
    with Ledger(url, clock=FakeClock()) as ledger:
        topic, started_state = stored_state(ledger, "run_1", 2)
        position = insert_stored_event(ledger, "run_ghost", 1, topic, started_state)
        ledger.submit(command("wait", "run_2", at=at(7)))
        return position, ledger.recorder.max_notification_id() or 0


def test_project_stops_at_a_poison_event_and_names_its_position_run_and_error(
    runledger: Cli, database_url: str
) -> None:
    seeded(database_url, small_history())
    before = projected(database_url)
    position, head = poisoned(database_url)

    result = runledger("project")

    assert (result.returncode, result.stdout) == (1, "")
    error = stderr_error(result)
    assert error["code"] == "projection_stopped"
    assert f"position {position}" in error["message"]
    assert "run_ghost" in error["message"]
    assert "no creation event" in error["message"]
    lag = single_json(runledger("lag"))
    assert before <= lag["position"] < position
    assert (lag["head"], lag["deadLetters"]) == (head, 0)


def test_project_with_dead_letters_sets_a_poison_event_aside_and_goes_on(
    runledger: Cli, database_url: str
) -> None:
    seeded(database_url, small_history())
    _, head = poisoned(database_url)

    projected = single_json(runledger("project", "--dead-letters", "--batch-size", "2"))
    lag = single_json(runledger("lag"))

    assert (projected["position"], projected["behindEvents"], projected["deadLetters"]) == (
        head,
        0,
        1,
    )
    assert (lag["position"], lag["behindEvents"], lag["deadLetters"]) == (head, 0, 1)


def test_verify_after_a_dead_letter_checks_every_run_and_reports_only_the_one_set_aside(
    runledger: Cli, database_url: str
) -> None:
    seeded(database_url, small_history())
    _, head = poisoned(database_url)
    projected(database_url, dead_letters=True)

    checked = runledger("verify")

    assert "Traceback" not in checked.stderr
    assert checked.returncode in (0, 1), checked
    assert checked.stdout, checked
    *reported, summary = checked.lines()
    assert {d["runId"] for d in reported} <= {"run_ghost"}
    assert summary["position"] == head
    assert summary["runs"] >= 3


# verify and rebuild ---------------------------------------------------------------------------


def test_verify_reports_each_hand_corrupted_cell_and_rebuild_repairs_them(
    runledger: Cli, database_url: str
) -> None:
    recorded = seeded(database_url, small_history())
    projected(database_url)
    for run_id, column, value in [
        ("run_1", "duration_ms", 1),
        ("run_2", "input", '{"prompt":"bye","n":1}'),
        ("run_3", "status", "failed"),
    ]:
        behind_the_ledgers_back(
            database_url, f"UPDATE workflow_runs SET {column} = %s WHERE id = %s", value, run_id
        )

    found = runledger("verify")
    rebuilt = runledger("rebuild")
    checked = runledger("verify")

    assert found.returncode == 1, found
    *reported, summary = found.lines()
    rollup = [d for d in reported if d["field"] == "(daily rollup)"]  # PostgreSQL's: now off
    reported = [d for d in reported if d not in rollup]
    if database_url.startswith("postgresql"):  # the status moved a count, the duration moved
        assert [sorted(d["row"]) for d in rollup] == [  # a duration: both are reported
            sorted(COUNTS),
            ["durations"],
        ]
    else:
        assert rollup == []
    assert summary == {"runs": 3, "position": recorded, "disagreements": 3 + len(rollup)}
    assert [(d["runId"], d["field"]) for d in reported] == [
        ("run_1", "durationMs"),
        ("run_2", "input"),
        ("run_3", "status"),
    ]
    assert [(d["row"], d["replayed"]) for d in reported if d["field"] != "input"] == [
        (1, 3000),
        ("failed", "pending"),
    ]
    (json_cell,) = (d for d in reported if d["field"] == "input")
    assert payload.same(json_cell["row"], {"prompt": "bye", "n": 1})
    assert payload.same(json_cell["replayed"], {"prompt": "hi", "n": 1})
    assert single_json(rebuilt) == {"rebuilt": True, "position": recorded}
    assert checked.returncode == 0, checked
    assert checked.lines() == [{"runs": 3, "position": recorded, "disagreements": 0}]


# Crashes ------------------------------------------------------------------------------------

KILLS = 4
RUNS_PER_WORKSPACE = 200
"""About 3,500 events: seventy batches of fifty."""


def moved_past(view: RunsView, position: int, process: subprocess.Popen[bytes]) -> None:
    """Waits until the view's position passes `position`, or the process has ended."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while view.position() <= position and process.poll() is None:
        assert time.monotonic() < deadline, "the projection made no progress"
        time.sleep(0.01)


def test_a_projection_killed_during_catch_up_and_restarted_ends_as_an_uninterrupted_one(
    runledger: Cli, database_url: str, tmp_path: Path
) -> None:
    day = workday(datetime.now(UTC) - timedelta(days=2), RUNS_PER_WORKSPACE)
    run_ids = sorted({line["runId"] for line in day if line["command"] == "create"})
    head = seeded(database_url, day)
    rng = random.Random(20261124)
    positions, exits = [0], []

    with Ledger(database_url) as ledger, opened_view(ledger) as view:
        for kill in range(KILLS):
            name = f"killed-{kill}"
            with started(tmp_path, database_url, "project", "--batch-size", "50", name=name) as p:
                moved_past(view, positions[-1], p)
                time.sleep(rng.uniform(0, 0.05))
                p.kill()
                exits.append(p.wait(timeout=PROCESS_TIMEOUT))
            positions.append(view.position())
        finished = single_json(runledger("project", "--batch-size", "50"))
        projected = view.rows(run_ids)
        single_json(runledger("rebuild"))
        rebuilt = view.rows(run_ids)
        replayed = replayed_rows(ledger, run_ids)
    checked = runledger("verify")

    assert set(exits) <= {-signal.SIGKILL, 0}
    assert positions == sorted(positions)
    assert any(0 < position < head for position in positions), positions
    assert (finished["applied"], finished["position"]) == (head - positions[-1], head)
    assert finished["deadLetters"] == 0
    assert len(projected) == len(rebuilt) == len(run_ids)
    assert differing_rows(projected, rebuilt) == {}
    assert differing_rows(projected, replayed) == {}
    assert checked.returncode == 0, checked
    assert checked.lines()[-1] == {"runs": len(run_ids), "position": head, "disagreements": 0}


# Concurrency (PostgreSQL) -------------------------------------------------------------------

WRITERS = 4
WRITER_RUNS_PER_WORKSPACE = 40


def shares(lines: list[dict[str, Any]], count: int) -> list[list[dict[str, Any]]]:
    """The lines split between `count` writers by family (a run and its children stay with one
    writer, in order), so that no two writers touch the same run."""
    split: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    families: dict[str, int] = {}
    for line in lines:
        family = line["runId"].split("_c")[0]
        split[families.setdefault(family, len(families) % count)].append(line)
    return split


def test_writers_appending_while_a_follower_tails_leave_every_event_applied_exactly_once(
    postgres_database: str, tmp_path: Path
) -> None:
    url = postgres_database
    reset_postgres(url)
    runledger = Cli(cwd=tmp_path, db=url)
    day = workday(datetime.now(UTC) - timedelta(days=2), WRITER_RUNS_PER_WORKSPACE)
    for index, share in enumerate(shares(day, WRITERS)):
        (tmp_path / f"writer-{index}.jsonl").write_text(
            "".join(json.dumps(line) + "\n" for line in share)
        )
    with Ledger(url) as ledger, opened_view(ledger):
        pass  # the tables, before the processes start

    with ExitStack() as running:
        follower = running.enter_context(
            started(tmp_path, url, "project", "--follow", "--batch-size", "20", name="follower")
        )
        writers = [
            running.enter_context(
                started(tmp_path, url, "apply", f"writer-{i}.jsonl", name=f"writer-{i}")
            )
            for i in range(WRITERS)
        ]
        written = [writer.wait(timeout=PROCESS_TIMEOUT) for writer in writers]
        caught_up = runledger("wait-projection", "--timeout", "30")
        follower.send_signal(signal.SIGINT)
        stopped = follower.wait(timeout=15)

    with Ledger(url) as ledger:
        head = ledger.recorder.max_notification_id()
        events = dict(
            behind_the_ledgers_back(
                url,
                "SELECT originator_id, count(*) FROM runledger_events GROUP BY originator_id",
            )
        )
        versions = dict(behind_the_ledgers_back(url, "SELECT id, version FROM workflow_runs"))
    checked = runledger("verify")
    followed, follower_err = output_of(tmp_path, "follower")
    assert written == [0] * WRITERS, [output_of(tmp_path, f"writer-{i}") for i in range(WRITERS)]
    assert caught_up.returncode == 0, caught_up
    assert stopped == 0, follower_err
    assert json.loads(followed)["applied"] == head
    assert versions == events
    assert len(versions) == len({line["runId"] for line in day})
    assert checked.returncode == 0, checked
    assert checked.lines()[-1] == {"runs": len(versions), "position": head, "disagreements": 0}
