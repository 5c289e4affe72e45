"""`runledger apply`: one command a line in, one answer a line out, in order; every line tried."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.builders import SEED_FIELDS, at, command, create
from tests.e2e.conftest import RUNLEDGER, TIMEOUT_SECONDS, Cli, json_line, json_lines, rejected

MIXED = [
    create(at=at(0)),
    command("start", "run_404"),
    command("start", at=at(60)),
    command("resume", at=at(70)),
    command("complete", at=at(180), output={"total": 42}),
]
"""Good, not_found, good, illegal_transition, good."""


def test_apply_from_a_file_answers_each_line_in_order_and_records_the_good_lines_after_bad_ones(
    runledger: Cli, tmp_path: Path
) -> None:
    (tmp_path / "commands.jsonl").write_bytes(json_lines(*MIXED))

    result = runledger("apply", "commands.jsonl")

    assert (result.returncode, result.stderr) == (2, "")
    answers = result.lines()
    assert [answer["ok"] for answer in answers] == [True, False, True, False, True]
    assert [list(answer) for answer in answers] == [["ok", "run"], ["ok", "error"]] * 2 + [
        ["ok", "run"]
    ]
    assert all(list(answer["run"]) == SEED_FIELDS for answer in answers if answer["ok"])
    assert [answer["run"]["status"] for answer in answers if answer["ok"]] == [
        "pending",
        "running",
        "completed",
    ]
    assert [sorted(answers[i]["error"]) for i in (1, 3)] == [["code", "message"]] * 2
    assert (answers[1]["error"]["code"], answers[3]["error"]["code"]) == (
        "not_found",
        "illegal_transition",
    )
    assert [e["event"] for e in runledger.history("run_1")] == ["create", "start", "complete"]


@pytest.mark.parametrize("argv", [["apply", "-"], ["apply"]], ids=["dash", "no-argument"])
def test_apply_reads_standard_input_given_as_a_dash_or_no_argument(
    runledger: Cli, argv: list[str]
) -> None:
    lines = json_lines(create(at=at(0)), command("complete"), command("start", at=at(60)))

    result = runledger(*argv, stdin=lines)

    assert (result.returncode, result.stderr) == (2, "")
    answers = result.lines()
    assert [answer["ok"] for answer in answers] == [True, False, True]
    assert answers[1]["error"]["code"] == "illegal_transition"
    assert [e["event"] for e in runledger.history("run_1")] == ["create", "start"]


def test_apply_exits_0_when_every_line_is_accepted(runledger: Cli) -> None:
    lines = json_lines(create(at=at(0)), command("start", at=at(60)), command("cancel"))

    result = runledger("apply", stdin=lines)

    assert (result.returncode, result.stderr) == (0, "")
    assert [answer["run"]["status"] for answer in result.lines()] == [
        "pending",
        "running",
        "cancelled",
    ]


def test_apply_of_no_lines_prints_nothing_and_exits_0(runledger: Cli) -> None:
    result = runledger("apply", stdin=b"")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_apply_answers_repeated_deliveries_with_the_run_and_appends_them_once(
    runledger: Cli,
) -> None:
    delivery = [create(at=at(0)), command("start", at=at(60), idempotencyKey="start-1")]

    result = runledger("apply", stdin=json_lines(*delivery, *delivery))

    assert (result.returncode, result.stderr) == (0, "")
    runs = [answer["run"] for answer in result.lines()]
    assert runs[2:] == [runs[1], runs[1]]
    assert len(runledger.history("run_1")) == 2


def test_a_line_separator_inside_a_json_string_stays_inside_its_line(runledger: Cli) -> None:
    text = "one\u2028two\u2029three\x85four"
    lines = json_lines(create(at=at(0), input={"text": text}), command("start", reason=text))
    assert "\u2028".encode() in lines  # written raw, not escaped

    result = runledger("apply", stdin=lines)

    assert (result.returncode, result.stderr) == (0, "")
    answers = result.lines()
    assert len(answers) == 2
    assert answers[1]["run"]["input"] == {"text": text}
    assert runledger.history("run_1")[1]["reason"] == text


def test_crlf_line_endings_are_read_as_line_endings(runledger: Cli, tmp_path: Path) -> None:
    lines = [json_line(create(at=at(0))), json_line(command("start", at=at(60)))]
    (tmp_path / "windows.jsonl").write_bytes(b"\r\n".join(lines) + b"\r\n")

    result = runledger("apply", "windows.jsonl")

    assert (result.returncode, result.stderr) == (0, "")
    assert [answer["run"]["status"] for answer in result.lines()] == ["pending", "running"]


def test_the_last_line_of_a_file_without_a_trailing_newline_is_applied(
    runledger: Cli, tmp_path: Path
) -> None:
    lines = [json_line(create(at=at(0))), json_line(command("start", at=at(60)))]
    (tmp_path / "unterminated.jsonl").write_bytes(b"\n".join(lines))

    result = runledger("apply", "unterminated.jsonl")

    assert (result.returncode, result.stderr) == (0, "")
    assert [answer["run"]["status"] for answer in result.lines()] == ["pending", "running"]
    assert len(runledger.history("run_1")) == 2


def test_apply_of_a_file_that_does_not_exist_is_rejected(runledger: Cli) -> None:
    result = runledger("apply", "missing.jsonl")

    assert rejected(result) == "invalid"


def test_a_pipe_gets_each_answer_before_it_sends_the_next_line(runledger: Cli) -> None:
    """Groups in flight land before `apply` waits for more input (as a worker feeding it
    one command at a time, and waiting for each answer, needs)."""
    assert runledger.db is not None
    process = subprocess.Popen(
        [str(RUNLEDGER), "--db", runledger.db, "apply", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=runledger.cwd,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        answers = []
        for line in [create(), command("start"), command("complete", output={"n": 1})]:
            process.stdin.write(json_line(line) + b"\n")
            process.stdin.flush()
            answers.append(read_line(process.stdout.fileno(), TIMEOUT_SECONDS))
        process.stdin.close()

        assert process.wait(TIMEOUT_SECONDS) == 0
        assert [json.loads(a)["run"]["status"] for a in answers] == [
            "pending",
            "running",
            "completed",
        ]
    finally:
        process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()


def read_line(fd: int, timeout: float) -> bytes:
    """One line from a pipe, failing if it does not come within `timeout` seconds."""
    line, deadline = b"", time.monotonic() + timeout
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no answer within {timeout} s; got {line!r} so far"
        chunk = os.read(fd, 1)
        assert chunk, f"the pipe closed; got {line!r}"
        line += chunk
    return line
