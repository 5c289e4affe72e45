"""Input meant to break the command: each is answered with a JSON error, never a traceback.

A hostile `apply` line sits between two good ones (a create, then a start of the same run); the
hostile line must be answered with its error code, and the start after it must still be
accepted on top of the create alone (so the hostile line changed nothing and did not stop the
batch).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from domain import payload
from tests.builders import at, command, create, from_now, nested_json
from tests.e2e.conftest import RUNLEDGER, TIMEOUT_SECONDS, Cli, json_line, json_lines, rejected

TWO_MIB = 2 << 20
DEEPEST = 100
"""The deepest nesting a payload may have (lifecycle.md, "Rejections")."""
NEW = "run_2"
"""A run that no good line touches: a hostile create names it, so accepting it shows."""
CREATE = ["create", "--workspace-id", "ws_1", "--subject-id", "wf_checkout", "--user-id", "user_1"]


HOSTILE_LINES = [
    pytest.param(b'{"command":"start","runId":"run_1"', "invalid", id="malformed-json"),
    pytest.param(b'["start","run_1"]', "invalid", id="an-array"),
    pytest.param(b"", "invalid", id="an-empty-line"),
    pytest.param(json_line(create(NEW, input={"text": "a\x00b"})), "invalid", id="nul-in-input"),
    pytest.param(json_line(create(NEW, input={"a\x00": 1})), "invalid", id="nul-in-input-key"),
    pytest.param(json_line(command("complete", output=["\x00"])), "invalid", id="nul-in-output"),
    pytest.param(json_line(command("start", reason="\x00")), "invalid", id="nul-in-reason"),
    pytest.param(
        b'{"command":"start","runId":"run_1","reason":"a\x00b"}', "invalid", id="raw-nul-in-string"
    ),
    pytest.param(
        b'{"command":"start","runId":"run_1","reason":"\xff\xfe"}', "invalid", id="invalid-utf-8"
    ),
    pytest.param(
        b'{"command":"start","runId":"run_1","reason":"\xed\xa0\x80"}',
        "invalid",
        id="utf-8-encoded-surrogate",
    ),
    pytest.param(
        json_line(create(NEW), input=r'"\ud800"'), "invalid", id="lone-surrogate-escape-in-input"
    ),
    pytest.param(
        json_line(command("start"), reason=r'"\udfff"'),
        "invalid",
        id="lone-surrogate-escape-in-reason",
    ),
    pytest.param(json_line(create(NEW, input="x" * TWO_MIB)), "too_large", id="a-2-mib-input"),
    pytest.param(
        json_line(create(NEW), input=nested_json(DEEPEST + 1)), "invalid", id="nested-101-deep"
    ),
    pytest.param(
        json_line(create(NEW), input=nested_json(100_000)), "invalid", id="nested-100000-deep"
    ),
    pytest.param(json_line(create(NEW), input="NaN"), "invalid", id="nan"),
    pytest.param(json_line(create(NEW), input='{"x":Infinity}'), "invalid", id="infinity"),
    pytest.param(json_line(command("complete"), output="[-Infinity]"), "invalid", id="-infinity"),
    pytest.param(json_line({"command": "start", "runId": 1}), "invalid", id="run-id-a-number"),
    pytest.param(json_line(command("start", at=1_795_000_000)), "invalid", id="at-a-number"),
    pytest.param(
        json_line({"command": "explode", "runId": "run_1"}), "invalid", id="unknown-command"
    ),
    pytest.param(
        json_line({"command": "time-out", "runId": "run_1"}), "invalid", id="cli-name-in-apply"
    ),
    pytest.param(json_line(command("start", colour="red")), "invalid", id="unknown-field"),
    pytest.param(
        json_line({"command": "start", "run_id": "run_1"}), "invalid", id="snake-case-field"
    ),
    pytest.param(json_line(command("start", at="2026-11-24T05:01:00")), "invalid", id="naive-at"),
    pytest.param(
        json_line(command("start", at="0001-01-01T00:30:00+01:00")),
        "invalid",
        id="at-before-year-1-in-utc",
    ),
    pytest.param(
        b'{"command":"create","command":"start","runId":"run_1"}', "invalid", id="command-twice"
    ),
    pytest.param(json_line(create(NEW), input='{"a":1,"a":2}'), "invalid", id="input-key-twice"),
    pytest.param(json_line(create(NEW), input="1e131072"), "invalid", id="input-beyond-numeric"),
    pytest.param(
        json_line(command("complete"), output="[1e-16384]"), "invalid", id="output-beyond-numeric"
    ),
    pytest.param(json_line(command("start", run_id="run_1\n")), "invalid", id="run-id-newline"),
    pytest.param(
        json_line(create(NEW, workspaceId="ws_1\n")), "invalid", id="workspace-id-newline"
    ),
]


@pytest.mark.parametrize(("line", "code"), HOSTILE_LINES)
def test_a_hostile_line_is_answered_with_its_error_and_the_good_lines_around_it_are_applied(
    runledger: Cli, line: bytes, code: str
) -> None:
    lines = json_lines(create(at=at(0)), line, command("start", at=at(60)))

    result = runledger("apply", stdin=lines)

    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stderr) == (2, "")
    before, answer, after = result.lines()
    assert answer["ok"] is False
    assert sorted(answer["error"]) == ["code", "message"]
    assert answer["error"]["code"] == code
    assert answer["error"]["message"].strip()
    assert (before["ok"], after["ok"]) == (True, True)
    assert (after["run"]["status"], after["run"]["startedAt"]) == ("running", at(60))


def test_a_line_arriving_ten_minutes_ahead_of_the_ledgers_clock_is_invalid(
    runledger: Cli,
) -> None:
    lines = json_lines(
        create(at=at(0)), command("start", at=from_now(600)), command("start", at=at(60))
    )

    result = runledger("apply", stdin=lines)

    assert result.returncode == 2
    answers = result.lines()
    assert [answer["ok"] for answer in answers] == [True, False, True]
    assert answers[1]["error"]["code"] == "invalid"


@pytest.mark.parametrize(
    "raw_input",
    [
        pytest.param(nested_json(DEEPEST), id="nested-100-deep"),
        pytest.param('"a string, not an object"', id="a-string"),
        pytest.param("1" * 5000, id="an-integer-of-5000-digits"),
    ],
)
def test_an_unusual_but_valid_input_is_accepted_and_comes_back_as_written(
    runledger: Cli, raw_input: str
) -> None:
    unusual = json_line(create(NEW, at=at(0)), input=raw_input)
    lines = json_lines(create(at=at(0)), unusual, command("start", NEW))

    result = runledger("apply", stdin=lines)

    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stderr) == (0, "")
    assert [answer["ok"] for answer in result.lines()] == [True, True, True]
    assert result.stdout.count(f'"input":{raw_input},') == 2


def test_the_widest_numbers_accepted_are_projected_into_the_read_model_on_every_backend(
    runledger: Cli,
) -> None:
    widest = "[1e131071,-9.9e131071,1e-16383,0e999999]"
    runledger("apply", stdin=json_lines(json_line(create(at=at(0)), input=widest)))

    projected = runledger("project")
    listed = runledger("runs", "--workspace-id", "ws_1")

    assert (projected.returncode, projected.stderr) == (0, "")
    assert listed.returncode == 0
    (row,) = listed.json()["runs"]
    assert payload.same(row["input"], payload.loads(widest))  # jsonb writes 1e5 as 100000


def test_the_history_gives_a_100_deep_input_back_as_written(runledger: Cli) -> None:
    runledger("apply", stdin=json_lines(json_line(create(at=at(0)), input=nested_json(DEEPEST))))

    result = runledger("history", "run_1")

    assert result.returncode == 0
    assert f'"input":{nested_json(DEEPEST)},' in result.stdout


# Numbers and strings come back exactly -----------------------------------------------------------

EXACT_INPUT = '{"a":1.10,"b":1e5,"c":12345678901234567890123,"d":"é\\u2028"}'


def test_numbers_and_strings_given_on_the_command_line_come_back_exactly(runledger: Cli) -> None:
    runledger(*CREATE, "--run-id", "run_1", "--input", EXACT_INPUT, "--at", at(0))

    result = runledger("show", "run_1")

    assert result.returncode == 0
    assert '"input":{"a":1.10,"b":1e5,"c":12345678901234567890123,"d":' in result.stdout
    assert result.json()["input"]["d"] == "é\u2028"


LITERALS = ["-0", "-0.0", "1.0", "0.1", "1E+400", "1.5e-7", "-12345678901234567890.000", "0e0"]


def test_every_number_literal_comes_back_from_the_store_as_it_was_written(runledger: Cli) -> None:
    written = "[" + ",".join(LITERALS) + "]"
    runledger(*CREATE, "--run-id", "run_1", "--input", written, "--at", at(0))

    result = runledger("show", "run_1")

    assert result.returncode == 0
    shown = re.search(r'"input":(.*?),"output"', result.stdout)
    assert shown is not None
    assert shown[1] == written


# Hostile arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--run-id", "run_1\n"], id="run-id-with-a-trailing-newline"),
        pytest.param(["--run-id", b"run_\xff"], id="run-id-not-utf-8"),
        pytest.param(["--run-id", "run_1", "--input", b'"\xff"'], id="input-not-utf-8"),
        pytest.param(["--run-id", "run_1", "--input", '"\\u0000"'], id="input-nul"),
        pytest.param(["--run-id", "run_1", "--input", '"\\ud800"'], id="input-lone-surrogate"),
        pytest.param(["--run-id", "run_1", "--input", "[NaN]"], id="input-nan"),
        pytest.param(["--run-id", "run_1", "--input", "{bad"], id="input-malformed"),
        pytest.param(["--run-id", "run_1", "--input", nested_json(60_000)], id="input-deep"),
    ],
)
def test_a_hostile_create_argument_is_answered_as_invalid(
    runledger: Cli, extra: list[str | bytes]
) -> None:
    result = runledger(*CREATE, *extra)

    assert rejected(result) == "invalid"


def test_a_create_ten_minutes_ahead_of_the_ledgers_clock_is_invalid_and_makes_no_run(
    runledger: Cli,
) -> None:
    result = runledger(*CREATE, "--run-id", "run_1", "--at", from_now(600))

    assert rejected(result) == "invalid"
    assert rejected(runledger("history", "run_1")) == "not_found"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["start", "run_1\n"], id="run-id-with-a-trailing-newline"),
        pytest.param(["start", "run_1", "--reason", b"\xff"], id="reason-not-utf-8"),
    ],
)
def test_a_hostile_transition_argument_is_invalid_and_appends_nothing(
    runledger: Cli, argv: list[str | bytes]
) -> None:
    runledger.apply(create(at=at(0)))

    result = runledger(*argv)

    assert rejected(result) == "invalid"
    assert len(runledger.history("run_1")) == 1


@pytest.mark.parametrize("verb", ["show", "history", "tree"])
def test_reading_a_run_id_that_is_not_utf_8_is_invalid(runledger: Cli, verb: str) -> None:
    assert rejected(runledger(verb, b"run_\xff")) == "invalid"


def test_show_as_of_a_moment_outside_the_calendar_in_utc_is_invalid(runledger: Cli) -> None:
    runledger.apply(create(at=at(0)))

    result = runledger("show", "run_1", "--as-of", "0001-01-01T00:30:00+01:00")

    assert rejected(result) == "invalid"


def test_an_unknown_command_name_is_invalid(runledger: Cli) -> None:
    result = runledger("explode", "run_1")

    assert rejected(result) == "invalid"


# Databases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/ledger",
        "sqlite://ledger.db",
        "sqlite:///",
        "postgresql:///ledger",
        "postgresql://localhost/",
        "postgresql://localhost:port/ledger",
        "postgresql://localhost:99999/ledger",
        "not a url",
        "",
        "sqlite:///%00x.db",
    ],
)
def test_a_malformed_database_url_is_invalid(run_cli: Cli, url: str) -> None:
    result = run_cli("--db", url, "show", "run_1")

    assert rejected(result) == "invalid"


@pytest.mark.parametrize(
    "url", ["postgresql://runledger:s3cret@/ledger", "postgresql://runledger:s3cret@db:port/ledger"]
)
def test_a_malformed_database_url_is_rejected_without_printing_its_password(
    run_cli: Cli, url: str
) -> None:
    result = run_cli("--db", url, "show", "run_1")

    assert rejected(result) == "invalid"
    assert "s3cret" not in result.stderr


def test_an_unreachable_postgresql_server_exits_1_with_a_message_and_no_traceback(
    run_cli: Cli,
) -> None:
    result = run_cli("--db", "postgresql://postgres:s3cret@127.0.0.1:1/nope", "show", "run_1")

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr


def test_a_file_that_is_not_a_database_is_unavailable_with_a_message(
    run_cli: Cli, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_bytes(b"these are my notes, not a database\n" * 200)

    result = run_cli("--db", f"sqlite:///{tmp_path / 'notes.txt'}", "show", "run_1")

    assert (result.returncode, result.stdout) == (1, "")
    assert "Traceback" not in result.stderr
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "unavailable"
    assert "not a database" in error["message"]


# Signals and standard streams --------------------------------------------------------------------


def test_an_interrupt_while_the_command_starts_ends_it_without_a_traceback(
    runledger: Cli,
) -> None:
    assert runledger.db is not None
    process = subprocess.Popen(
        [str(RUNLEDGER), "--db", runledger.db, "show", "run_1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=runledger.cwd,
    )
    time.sleep(0.15)  # Python is up (about 25 ms here) and loading the ledger (about 250)

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)

    assert (process.returncode, stdout, stderr) == (130, b"", b"runledger: interrupted\n")


@pytest.mark.parametrize(
    ("argv", "closed", "named"),
    [
        pytest.param(["show", "run_1"], 1, "standard output", id="show-stdout"),
        pytest.param(["apply", "-"], 0, "standard input", id="apply-stdin"),
        pytest.param(["apply", "-"], 1, "standard output", id="apply-stdout"),
    ],
)
def test_a_closed_standard_stream_is_invalid_and_nothing_is_appended(
    runledger: Cli, argv: list[str], closed: int, named: str
) -> None:
    runledger.apply(create(at=at(0)))
    assert runledger.db is not None
    line = json_line(command("start", at=at(60))) + b"\n"

    result = subprocess.run(
        [str(RUNLEDGER), "--db", runledger.db, *argv],
        input=line if closed != 0 else None,
        stdout=subprocess.PIPE if closed != 1 else None,
        stderr=subprocess.PIPE,
        cwd=runledger.cwd,
        timeout=TIMEOUT_SECONDS,
        check=False,
        preexec_fn=lambda: os.close(closed),
    )

    assert result.returncode == 2
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "invalid"
    assert named in error["message"]
    assert len(runledger.history("run_1")) == 1


def test_a_reader_that_goes_away_ends_the_command_quietly_as_sigpipe_would(
    runledger: Cli,
) -> None:
    runledger.apply(create(at=at(0)))
    assert runledger.db is not None
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write breaks the pipe

    with os.fdopen(write, "wb") as stdout:
        result = subprocess.run(
            [str(RUNLEDGER), "--db", runledger.db, "history", "run_1"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            cwd=runledger.cwd,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )

    assert (result.returncode, result.stderr) == (141, b"")
