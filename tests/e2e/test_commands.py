"""Each `runledger` command as the contract's "Command line" section spells it, on every backend."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.builders import SEED_FIELDS, at, command, create
from tests.e2e.conftest import TIMEOUT_SECONDS, Cli, json_lines, rejected

ISO_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
LIFECYCLE = [
    create(at=at(0)),
    command("start", at=at(60)),
    command("pause", at=at(90)),
    command("resume", at=at(120)),
    command("wait", at=at(150)),
    command("resume", at=at(165)),
    command("complete", at=at(180), output={"total": 42}),
]
"""Queued 60 s, then running 30 + 30 + 15 s, paused 30 s, waiting 15 s: 120 s in all."""


def test_create_prints_the_new_run_with_exactly_the_seeds_seventeen_fields(runledger: Cli) -> None:
    runledger.apply(create("run_parent", at=at(0)))

    result = runledger(
        "create",
        "--run-id", "run_1",
        "--workspace-id", "ws_1",
        "--subject-id", "wf_checkout",
        "--user-id", "user_1",
        "--parent-run-id", "run_parent",
        "--mode", "sync",
        "--triggered-by", "agent",
        "--input", '{"cart":[1,2],"note":null}',
        "--cf-workflow-id", "cf_1",
        "--at", at(10),
        "--idempotency-key", "create-1",
    )  # fmt: skip

    assert (result.returncode, result.stderr) == (0, "")
    view = result.json()
    assert list(view) == SEED_FIELDS
    assert view == {
        "id": "run_1",
        "workspaceId": "ws_1",
        "subjectId": "wf_checkout",
        "parentRunId": "run_parent",
        "status": "pending",
        "mode": "sync",
        "input": {"cart": [1, 2], "note": None},
        "output": None,
        "error": None,
        "triggeredBy": "agent",
        "cfWorkflowId": "cf_1",
        "durationMs": None,
        "userId": "user_1",
        "startedAt": None,
        "completedAt": None,
        "createdAt": at(10),
        "updatedAt": at(10),
    }


def test_create_without_a_run_id_or_a_moment_makes_an_id_and_takes_the_ledgers_clock(
    runledger: Cli,
) -> None:
    result = runledger(
        "create", "--workspace-id", "ws_1", "--subject-id", "wf_checkout", "--user-id", "user_1"
    )

    assert (result.returncode, result.stderr) == (0, "")
    view = result.json()
    assert re.fullmatch(r"run_[0-9A-Z]{26}", view["id"])
    assert (view["mode"], view["triggeredBy"], view["input"]) == ("async", "user", None)
    assert ISO_MILLIS.fullmatch(view["createdAt"])
    assert view["updatedAt"] == view["createdAt"]


@pytest.mark.parametrize(
    ("seed", "argv", "expected_view", "expected_event"),
    [
        pytest.param(
            [create(at=at(0))],
            ["start", "run_1", "--at", at(60), "--actor", "agent_7", "--reason", "scheduled",
             "--idempotency-key", "start-1"],
            {"status": "running", "startedAt": at(60), "updatedAt": at(60)},
            {"event": "start", "statusBefore": "pending", "statusAfter": "running",
             "actor": "agent_7", "reason": "scheduled", "idempotencyKey": "start-1"},
            id="start",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60))],
            ["pause", "run_1", "--at", at(90), "--reason", "rate limited"],
            {"status": "paused", "updatedAt": at(90), "completedAt": None},
            {"event": "pause", "statusBefore": "running", "statusAfter": "paused",
             "reason": "rate limited"},
            id="pause",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60)), command("pause", at=at(90))],
            ["resume", "run_1", "--at", at(120), "--actor", "user_1"],
            {"status": "running", "startedAt": at(60), "updatedAt": at(120)},
            {"event": "resume", "statusBefore": "paused", "statusAfter": "running",
             "actor": "user_1"},
            id="resume",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60))],
            ["wait", "run_1", "--at", at(90), "--reason", "approval"],
            {"status": "waiting", "updatedAt": at(90)},
            {"event": "wait", "statusBefore": "running", "statusAfter": "waiting",
             "reason": "approval"},
            id="wait",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60))],
            ["complete", "run_1", "--at", at(180), "--output", '{"total":42,"items":["a"]}'],
            {"status": "completed", "output": {"total": 42, "items": ["a"]},
             "completedAt": at(180), "durationMs": 120_000, "error": None},
            {"event": "complete", "statusBefore": "running", "statusAfter": "completed",
             "output": {"total": 42, "items": ["a"]}},
            id="complete",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60))],
            ["fail", "run_1", "--at", at(180), "--error", "card declined"],
            {"status": "failed", "error": "card declined", "output": None,
             "completedAt": at(180), "durationMs": 120_000},
            {"event": "fail", "statusBefore": "running", "statusAfter": "failed",
             "error": "card declined"},
            id="fail",
        ),
        pytest.param(
            [create(at=at(0))],
            ["cancel", "run_1", "--at", at(30), "--reason", "user asked"],
            {"status": "cancelled", "startedAt": None, "completedAt": at(30), "durationMs": None},
            {"event": "cancel", "statusBefore": "pending", "statusAfter": "cancelled",
             "reason": "user asked"},
            id="cancel",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60))],
            ["time-out", "run_1", "--at", at(3660)],
            {"status": "timed_out", "completedAt": at(3660), "durationMs": 3_600_000},
            {"event": "timeOut", "statusBefore": "running", "statusAfter": "timed_out"},
            id="time-out",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60)),
             command("complete", at=at(180))],
            ["link-cf-workflow", "run_1", "--cf-workflow-id", "cf_9", "--at", at(200)],
            {"status": "completed", "cfWorkflowId": "cf_9", "updatedAt": at(200),
             "completedAt": at(180), "durationMs": 120_000},
            {"event": "linkCfWorkflow", "statusBefore": "completed",
             "statusAfter": "completed", "cfWorkflowId": "cf_9"},
            id="link-cf-workflow",
        ),
    ],
)  # fmt: skip
def test_each_transition_command_prints_the_moved_run_and_records_one_event(
    runledger: Cli,
    seed: list[dict[str, Any]],
    argv: list[str],
    expected_view: dict[str, Any],
    expected_event: dict[str, Any],
) -> None:
    runledger.apply(*seed)

    result = runledger(*argv)

    assert (result.returncode, result.stderr) == (0, "")
    view = result.json()
    assert list(view) == SEED_FIELDS
    assert {key: view[key] for key in expected_view} == expected_view
    history = runledger.history("run_1")
    assert len(history) == len(seed) + 1
    latest = history[-1]
    assert {key: latest[key] for key in expected_event} == expected_event
    assert latest["at"] == argv[argv.index("--at") + 1]


def test_show_prints_the_run_as_it_is_now(runledger: Cli) -> None:
    *_, latest = runledger.apply(*LIFECYCLE)

    result = runledger("show", "run_1")

    assert (result.returncode, result.stderr) == (0, "")
    view = result.json()
    assert list(view) == SEED_FIELDS
    assert view == latest
    assert (view["status"], view["durationMs"]) == ("completed", 120_000)


def test_show_extended_adds_the_timings_and_the_version(runledger: Cli) -> None:
    runledger.apply(*LIFECYCLE)

    result = runledger("show", "run_1", "--extended")

    assert (result.returncode, result.stderr) == (0, "")
    extended = result.json()
    assert list(extended) == ["run", "timings", "version"]
    assert list(extended["run"]) == SEED_FIELDS
    assert extended["timings"] == {
        "queuedMs": 60_000,
        "runningMs": 75_000,
        "pausedMs": 30_000,
        "waitingMs": 15_000,
    }
    assert extended["version"] == len(LIFECYCLE)
    timings = extended["timings"]
    parts = timings["runningMs"] + timings["pausedMs"] + timings["waitingMs"]
    assert parts == extended["run"]["durationMs"]


def test_show_as_of_a_moment_reads_the_sources_clock_and_includes_an_event_at_that_moment(
    runledger: Cli,
) -> None:
    runledger.apply(*LIFECYCLE)

    result = runledger("show", "run_1", "--as-of", at(90), "--extended")

    assert (result.returncode, result.stderr) == (0, "")
    extended = result.json()
    assert list(extended["run"]) == SEED_FIELDS
    run = extended["run"]
    assert (run["status"], run["updatedAt"], run["completedAt"]) == ("paused", at(90), None)
    assert extended["version"] == 3
    assert extended["timings"] == {
        "queuedMs": 60_000,
        "runningMs": 30_000,
        "pausedMs": 0,
        "waitingMs": 0,
    }


def test_show_as_known_at_a_moment_reads_the_ledgers_recording_clock(runledger: Cli) -> None:
    runledger.apply(create(at=at(0)))
    started = runledger("start", "run_1", "--at", at(60))
    created_record, started_record = (e["recordedAt"] for e in runledger.history("run_1"))
    assert started.returncode == 0
    assert created_record < started_record  # two processes, one after the other

    result = runledger("show", "run_1", "--as-known-at", created_record)

    assert (result.returncode, result.stderr) == (0, "")
    view = result.json()
    assert list(view) == SEED_FIELDS
    assert (view["status"], view["startedAt"], view["updatedAt"]) == ("pending", None, at(0))


@pytest.mark.parametrize("moment_option", ["--as-of", "--as-known-at"])
def test_show_before_the_run_existed_is_not_found(runledger: Cli, moment_option: str) -> None:
    runledger.apply(create(at=at(60)))

    result = runledger("show", "run_1", moment_option, at(0))

    assert rejected(result) == "not_found"


def test_history_prints_one_json_object_a_line_oldest_first(runledger: Cli) -> None:
    runledger.apply(
        create(at=at(0), input={"cart": [1]}),
        command("start", at=at(60), actor="agent_7"),
        command("complete", at=at(180), output={"total": 42}),
    )

    result = runledger("history", "run_1")

    assert (result.returncode, result.stderr) == (0, "")
    entries = result.lines()
    assert [e["version"] for e in entries] == [1, 2, 3]
    assert [e["event"] for e in entries] == ["create", "start", "complete"]
    assert [e["at"] for e in entries] == [at(0), at(60), at(180)]
    assert [e["statusBefore"] for e in entries] == [None, "pending", "running"]
    assert [e["statusAfter"] for e in entries] == ["pending", "running", "completed"]
    recorded = [e["recordedAt"] for e in entries]
    assert all(ISO_MILLIS.fullmatch(moment) for moment in recorded)
    assert recorded == sorted(recorded)
    assert (entries[0]["input"], entries[1]["actor"], entries[2]["output"]) == (
        {"cart": [1]},
        "agent_7",
        {"total": 42},
    )


SIZE_OF_ONE_ARGUMENT = 120_000
"""Under Linux's limit on one argument (128 KiB): a larger `--output` cannot even be passed.
A control character is 1 byte in an argument and 6 in JSON (`\\u0001`), so two such arguments
make a command of about 1.4 MiB of JSON."""


@pytest.mark.parametrize(
    ("seed", "argv", "code"),
    [
        pytest.param(
            [create(at=at(0))], ["start", "run_1", "--at", "2026-11-24T05:01:00"], "invalid",
            id="invalid-naive-at",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60))], ["fail", "run_1"], "invalid",
            id="invalid-fail-without-error",
        ),
        pytest.param(
            [create(at=at(0))], ["start", "run_1", "--colour", "red"], "invalid",
            id="invalid-unknown-option",
        ),
        pytest.param(
            [create(at=at(0))], ["complete", "run_1", "--output", "1"], "illegal_transition",
            id="illegal-transition",
        ),
        pytest.param(
            [create(at=at(60))], ["start", "run_1", "--at", at(59.999)], "out_of_order",
            id="out-of-order",
        ),
        pytest.param(
            [create(at=at(0))],
            ["create", "--run-id", "run_1", "--workspace-id", "ws_1", "--subject-id",
             "wf_other", "--user-id", "user_1"],
            "conflict",
            id="conflict-create",
        ),
        pytest.param(
            [create(at=at(0), cfWorkflowId="cf_1")],
            ["link-cf-workflow", "run_1", "--cf-workflow-id", "cf_2"],
            "conflict",
            id="conflict-link",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60), idempotencyKey="key_1")],
            ["cancel", "run_1", "--idempotency-key", "key_1"],
            "conflict",
            id="conflict-idempotency-key",
        ),
        pytest.param(
            [create(at=at(0)), command("start", at=at(60))],
            ["fail", "run_1", "--error", "\x01" * SIZE_OF_ONE_ARGUMENT,
             "--reason", "\x01" * SIZE_OF_ONE_ARGUMENT],
            "too_large",
            id="too-large",
        ),
    ],
)  # fmt: skip
def test_a_rejected_command_prints_one_error_on_stderr_exits_2_and_appends_nothing(
    runledger: Cli, seed: list[dict[str, Any]], argv: list[str], code: str
) -> None:
    runledger.apply(*seed)

    result = runledger(*argv)

    assert rejected(result) == code
    assert len(runledger.history("run_1")) == len(seed)


def test_a_transition_naming_an_unknown_run_is_not_found_and_makes_no_run(runledger: Cli) -> None:
    result = runledger("start", "run_404")

    assert rejected(result) == "not_found"
    assert rejected(runledger("history", "run_404")) == "not_found"


@pytest.mark.parametrize("verb", ["show", "history"])
def test_reading_an_unknown_run_is_not_found(runledger: Cli, verb: str) -> None:
    result = runledger(verb, "run_404")

    assert rejected(result) == "not_found"


def test_show_at_two_moments_at_once_is_invalid(runledger: Cli) -> None:
    result = runledger("show", "run_1", "--as-of", at(0), "--as-known-at", at(0))

    assert rejected(result) == "invalid"


def test_a_create_naming_a_parent_in_another_workspace_is_invalid_and_makes_no_run(
    runledger: Cli,
) -> None:
    runledger.apply(create("run_parent", at=at(0), workspaceId="ws_other"))

    result = runledger(
        "create", "--run-id", "run_2", "--workspace-id", "ws_1", "--subject-id", "wf_checkout",
        "--user-id", "user_1", "--parent-run-id", "run_parent",
    )  # fmt: skip

    assert rejected(result) == "invalid"
    assert rejected(runledger("history", "run_2")) == "not_found"


def test_the_same_create_twice_prints_the_same_run_and_appends_nothing(runledger: Cli) -> None:
    argv = ["create", "--run-id", "run_1", "--workspace-id", "ws_1", "--subject-id", "wf_checkout"]
    argv += ["--user-id", "user_1", "--input", '{"n":1.10}', "--at", at(0)]
    first = runledger(*argv)

    again = runledger(*argv[:-1], at(5))

    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == first.stdout
    assert len(runledger.history("run_1")) == 1


# Which database ----------------------------------------------------------------------------------


def test_with_no_db_and_no_variable_the_ledger_is_runledger_db_in_the_working_directory(
    run_cli: Cli, tmp_path: Path
) -> None:
    run_cli.apply(create(at=at(0)))

    result = run_cli("show", "run_1")

    assert (tmp_path / "runledger.db").is_file()
    assert (result.returncode, result.json()["id"]) == (0, "run_1")


def test_the_database_variable_is_used_when_there_is_no_db_option(
    run_cli: Cli, runledger: Cli, database_url: str, tmp_path: Path
) -> None:
    seeded = run_cli(
        "apply", stdin=json_lines(create(at=at(0))), env={"RUNLEDGER_DATABASE_URL": database_url}
    )

    result = runledger("show", "run_1")

    assert seeded.returncode == 0
    assert (result.returncode, result.json()["id"]) == (0, "run_1")
    assert not (tmp_path / "runledger.db").exists()


def test_the_db_option_wins_over_the_database_variable(
    run_cli: Cli, runledger: Cli, tmp_path: Path
) -> None:
    elsewhere = {"RUNLEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'elsewhere.db'}"}

    seeded = runledger("apply", stdin=json_lines(create(at=at(0))), env=elsewhere)

    assert seeded.returncode == 0
    assert runledger("show", "run_1").returncode == 0
    assert rejected(run_cli("show", "run_1", env=elsewhere)) == "not_found"
    assert not (tmp_path / "runledger.db").exists()


DRIVER_CHECK = """
import json, sys
from infrastructure import cli
codes = [cli.main(argv) for argv in json.loads(sys.argv[1])]
loaded = [m for m in sys.modules if m.partition(".")[0].startswith("psycopg")]
loaded += [m for m in sys.modules if m == "eventsourcing.postgres"]
print(json.dumps({"codes": codes, "loaded": sorted(loaded)}), file=sys.stderr)
"""


def test_a_ledger_on_sqlite_never_loads_the_postgresql_driver(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'ledger.db'}"]
    calls = [
        [*db, "create", "--run-id", "run_1", "--workspace-id", "ws_1", "--subject-id", "wf_1",
         "--user-id", "user_1"],
        [*db, "start", "run_1"],
        [*db, "show", "run_1"],
        [*db, "project"],
        [*db, "runs", "--workspace-id", "ws_1"],
    ]  # fmt: skip

    result = subprocess.run(
        [sys.executable, "-c", DRIVER_CHECK, json.dumps(calls)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )

    report = json.loads(result.stderr.splitlines()[-1])
    assert report == {"codes": [0] * len(calls), "loaded": []}, result.stderr


def test_serving_on_sqlite_never_loads_the_postgresql_driver(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    check = (
        "import sys\n"
        "from infrastructure.http.app import create_app\n"
        "from infrastructure.http.service import Settings\n"
        "from infrastructure.application import Ledger\n"
        f"create_app(Ledger({db!r}), Settings(None))\n"
        "print(sorted(m for m in sys.modules if m.startswith('psycopg')))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )

    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr
