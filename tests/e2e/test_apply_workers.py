"""`runledger apply` over worker processes (infrastructure/apply_workers.py): the same answers,
in the same order, and the same events as in one process; a pipe still answered line by line;
a worker's death and an interrupt reported, never hung on."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain import identifiers
from domain.commands import MAX_COMMAND_BYTES
from infrastructure import eventstore
from infrastructure.application import Ledger
from infrastructure.apply_workers import (
    MAX_WORKERS,
    MIN_FILE_BYTES,
    WorkerFailed,
    default_workers,
)
from infrastructure.postgres import throwaway_database
from tests.builders import at, command, create, workday
from tests.e2e.conftest import RUNLEDGER, TIMEOUT_SECONDS, Cli, json_line, rejected
from tests.e2e.test_apply import read_line

BOM = "\ufeff".encode()


@pytest.fixture
def other_database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A second empty database on the backend under test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    server: str = request.getfixturevalue("postgres_server_url")
    with throwaway_database(server, "runledger_test_other") as url:
        yield url


def odd_lines() -> list[bytes]:
    """Lines that test what a worker must not change: rejections of every kind, replays,
    derived run ids, parents before and after their children."""
    keyed = create(None, idempotencyKey="k-1", workspaceId="ws_odd", at=at(0))
    derived = identifiers.derived_run_id("ws_odd", "k-1")
    lines: list[dict[str, Any] | bytes] = [
        create("run_parent", workspaceId="ws_odd", at=at(0)),
        create("run_child", workspaceId="ws_odd", parentRunId="run_parent", at=at(1)),
        create("run_orphan", workspaceId="ws_odd", parentRunId="run_later", at=at(1)),
        create("run_later", workspaceId="ws_odd", at=at(2)),
        keyed,
        keyed,  # a replay: the same run again
        command("start", derived, at=at(3)),
        command("start", "run_child", at=at(3)),
        command("resume", "run_child", at=at(4)),  # illegal from running
        command("start", "run_404", at=at(4)),
        b"",
        b"{not json",
        b"[1, 2]",
        BOM + json_line(command("start", "run_parent", at=at(5))),  # a BOM inside: invalid
        b'{"command":"start","runId":7}',
        b'{"command":"start","runId":"run_later","at":NaN}',
        b"x" * (MAX_COMMAND_BYTES + 1),
        command("complete", "run_child", at=at(6), output={"n": 1.10}),
        # json.loads refuses an integer of over 4,300 digits; the ledger takes it
        json_line(create("run_long", workspaceId="ws_odd", at=at(0)), input="1" * 4301),
        json_line(command("start", "run_long", at=at(1)), runId='"run_long"'),  # runId twice
        json_line(command("start", "run_long", at=at(1))),
    ]
    return [line if isinstance(line, bytes) else json_line(line) for line in lines]


def test_workers_answer_every_line_and_record_every_event_as_one_process_does(
    runledger: Cli, other_database_url: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(days=2)
    day = [json_line(line) for line in workday(start, runs_per_workspace=20)]
    first = BOM + json_line(create("run_first", workspaceId="ws_odd", at=at(0)))
    lines = [first, *odd_lines(), *day, *odd_lines()]  # the second time, replays and clashes
    (tmp_path / "in.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))

    alone = runledger("apply", "--workers", "1", "in.jsonl")
    dealt = Cli(tmp_path, other_database_url)("apply", "--workers", "3", "in.jsonl")

    assert (dealt.returncode, dealt.stderr) == (alone.returncode, alone.stderr) == (2, "")
    assert len(alone.lines()) == len(lines)
    assert dealt.stdout == alone.stdout
    answers = alone.lines()
    assert answers[2]["ok"]
    assert answers[2]["run"]["parentRunId"] == "run_parent"
    assert answers[3]["error"]["code"] == "invalid"  # its parent comes later
    run_ids = {answer["run"]["id"] for answer in answers if answer["ok"]}
    assert stored(runledger.db, run_ids) == stored(other_database_url, run_ids)


def stored(url: str | None, run_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Each run's events, less the ledger's own clock (`timestamp`)."""
    assert url is not None
    with Ledger(url) as ledger:
        return {
            run_id: [
                {k: v for k, v in vars(event).items() if k != "timestamp"}
                for event in ledger.history(run_id)
            ]
            for run_id in sorted(run_ids)
        }


def test_children_created_right_after_their_parents_find_them_in_another_worker(
    runledger: Cli, tmp_path: Path
) -> None:
    lines = []
    for n in range(40):
        lines.append(create(f"run_p{n}", at=at(n)))
        lines.append(create(f"run_c{n}", parentRunId=f"run_p{n}", at=at(n)))
    (tmp_path / "in.jsonl").write_bytes(b"".join(json_line(line) + b"\n" for line in lines))

    result = runledger("apply", "--workers", "2", "in.jsonl")

    assert (result.returncode, result.stderr) == (0, ""), result
    assert [answer["run"]["parentRunId"] for answer in result.lines()[1::2]] == [
        f"run_p{n}" for n in range(40)
    ]


class Applying:
    """`runledger apply --workers 2 -` fed through a pipe, its answers read line by line."""

    def __init__(self, cli: Cli) -> None:
        assert cli.db is not None
        self.process = subprocess.Popen(
            [str(RUNLEDGER), "--db", cli.db, "apply", "--workers", "2", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cli.cwd,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout

    def send(self, line: dict[str, Any]) -> dict[str, Any]:
        self.stdin.write(json_line(line) + b"\n")
        self.stdin.flush()
        answer: dict[str, Any] = json.loads(read_line(self.stdout.fileno(), TIMEOUT_SECONDS))
        return answer

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def end(self) -> tuple[int, bytes, bytes]:
        """Closes the input; the exit status, the rest of the output, and standard error."""
        if not self.stdin.closed:
            self.stdin.close()
        returncode = self.process.wait(TIMEOUT_SECONDS)
        assert self.process.stderr is not None
        return returncode, self.stdout.read(), self.process.stderr.read()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.stdin, self.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def applying(runledger: Cli) -> Iterator[Applying]:
    running = Applying(runledger)
    try:
        yield running
    finally:
        running.close()


def test_a_pipe_gets_each_answer_before_it_sends_the_next_line_with_workers(
    applying: Applying,
) -> None:
    statuses = []
    for n in range(6):  # six runs: both workers answer
        statuses.append(applying.send(create(f"run_{n}", at=at(0)))["run"]["status"])
        statuses.append(applying.send(command("start", f"run_{n}", at=at(1)))["run"]["status"])

    assert applying.end() == (0, b"", b"")
    assert statuses == ["pending", "running"] * 6


def test_a_worker_that_dies_ends_apply_with_an_error_after_the_answers_before_it(
    applying: Applying,
) -> None:
    for n in range(12):
        assert applying.send(create(f"run_{n}", at=at(0)))["ok"]
    victim, survivor = applying.workers()
    os.kill(victim, signal.SIGKILL)
    for n in range(12):  # some of these go to the dead worker (all to one: 1 in 2,048)
        applying.stdin.write(json_line(command("start", f"run_{n}", at=at(1))) + b"\n")

    returncode, rest, stderr = applying.end()

    assert returncode == 1
    assert b"Traceback" not in stderr
    error = json.loads(stderr)["error"]
    assert error["code"] == "unexpected"
    assert "apply worker" in error["message"]
    assert "-9" in error["message"]
    answered = [json.loads(line) for line in rest.splitlines()]
    assert all(answer["ok"] for answer in answered)
    assert len(answered) < 12
    assert not Path(f"/proc/{survivor}").exists() or _is_zombie(survivor)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_an_interrupted_apply_with_workers_answers_what_it_saved_and_exits_130(
    applying: Applying,
) -> None:
    for n in range(6):
        assert applying.send(create(f"run_{n}", at=at(0)))["ok"]
    workers = applying.workers()

    applying.process.send_signal(signal.SIGINT)
    returncode, rest, stderr = applying.end()

    assert (returncode, rest) == (130, b"")
    assert stderr == b"runledger: interrupted\n"
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not all(_is_zombie(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_is_zombie(pid) for pid in workers)


RUNS = [f"run_{n}" for n in range(10_000)]


def start_applying(
    runledger: Cli, tmp_path: Path, workers: str, **options: Any
) -> subprocess.Popen[bytes]:
    """`apply --workers N` of a create and a start for each of RUNS (20,000 lines) from a
    file, as a process, its output and errors piped."""
    pairs = [(create(r, at=at(0)), command("start", r, at=at(1))) for r in RUNS]
    lines = [json_line(line) for pair in pairs for line in pair]
    (tmp_path / "in.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    assert runledger.db is not None
    return subprocess.Popen(
        [str(RUNLEDGER), "--db", runledger.db, "apply", "--workers", workers, "in.jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        **options,
    )


def saved_events(url: str | None) -> int:
    assert url is not None
    with Ledger(url) as ledger:
        return sum(map(len, eventstore.histories(ledger.recorder, RUNS).values()))


def is_answer_to_its_line(number: int, answer: dict[str, Any]) -> bool:
    """Whether an answer is the one to line `number` (a create, then a start, of each run)."""
    run = answer["run"]
    return (run["id"], run["status"]) == (RUNS[number // 2], ("pending", "running")[number % 2])


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [
        (signal.SIGINT, 130, b"runledger: interrupted\n"),
        (signal.SIGTERM, 143, b"runledger: terminated\n"),
    ],
    ids=["sigint", "sigterm"],
)
@pytest.mark.parametrize("workers", ["1", "2"], ids=["in-process", "two-workers"])
def test_an_apply_stopped_half_way_answers_exactly_the_lines_it_saved(
    runledger: Cli, tmp_path: Path, signum: int, status: int, said: bytes, workers: str
) -> None:
    process = start_applying(runledger, tmp_path, workers)
    assert process.stdout is not None

    first = read_line(process.stdout.fileno(), TIMEOUT_SECONDS)  # it is under way
    process.send_signal(signum)
    rest, stderr = process.communicate(timeout=TIMEOUT_SECONDS)

    answers = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert (process.returncode, stderr) == (status, said)
    assert 0 < len(answers) < 2 * len(RUNS)
    assert all(is_answer_to_its_line(n, answer) for n, answer in enumerate(answers))
    assert saved_events(runledger.db) == len(answers)


def test_an_apply_stopped_with_its_workers_all_at_once_answers_exactly_the_lines_it_saved(
    runledger: Cli, tmp_path: Path
) -> None:
    process = start_applying(runledger, tmp_path, "2")
    assert process.stdout is not None
    first = read_line(process.stdout.fileno(), TIMEOUT_SECONDS)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()

    for pid in [process.pid, *map(int, children)]:  # as systemd stops a service
        os.kill(pid, signal.SIGTERM)
    rest, stderr = process.communicate(timeout=TIMEOUT_SECONDS)

    answers = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert (process.returncode, stderr) == (143, b"runledger: terminated\n")
    assert all(is_answer_to_its_line(n, answer) for n, answer in enumerate(answers))
    assert saved_events(runledger.db) == len(answers)


@pytest.mark.parametrize("workers", ["1", "2"], ids=["in-process", "two-workers"])
def test_a_second_interrupt_stops_apply_at_once_and_its_whole_answers_are_its_lines(
    runledger: Cli, tmp_path: Path, workers: str
) -> None:
    process = start_applying(runledger, tmp_path, workers)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT_SECONDS)
    assert ready  # it writes answers, and nobody reads them yet: it will block

    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    output, stderr = process.communicate(timeout=10)

    assert (process.returncode, stderr) == (130, b"runledger: interrupted\n")
    whole = output.split(b"\n")[:-1]  # the last answer may be cut short
    assert whole
    assert all(is_answer_to_its_line(n, json.loads(line)) for n, line in enumerate(whole))
    assert saved_events(runledger.db) >= len(whole)


def test_an_apply_started_with_interrupts_ignored_ignores_them(
    runledger: Cli, tmp_path: Path
) -> None:
    ignoring = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)}  # `cmd &`
    process = start_applying(runledger, tmp_path, "2", **ignoring)
    assert process.stdout is not None
    first = read_line(process.stdout.fileno(), TIMEOUT_SECONDS)

    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=TIMEOUT_SECONDS)

    assert (process.returncode, stderr) == (0, b"")
    assert len([first, *rest.splitlines()]) == 2 * len(RUNS)


def test_an_in_memory_database_is_applied_in_process_whatever_workers_are_asked_for(
    run_cli: Cli,
) -> None:
    lines = b"".join(json_line(line) + b"\n" for line in [create(at=at(0)), command("start")])

    result = run_cli("--db", "sqlite:///:memory:", "apply", "--workers", "4", stdin=lines)

    assert (result.returncode, result.stderr) == (0, "")
    assert [answer["run"]["status"] for answer in result.lines()] == ["pending", "running"]


@pytest.mark.parametrize("given", ["0", "33", "two", "-1"])
def test_workers_out_of_range_are_rejected(run_cli: Cli, given: str) -> None:
    assert rejected(run_cli("apply", "--workers", given, stdin=b"")) == "invalid"


def test_workers_start_by_default_only_for_a_large_file(tmp_path: Path) -> None:
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_bytes(b"{}\n" * 1000)
    with large.open("wb") as file:
        file.truncate(MIN_FILE_BYTES)
    cpus = len(os.sched_getaffinity(0))
    read, write = os.pipe()
    try:
        with small.open("rb") as a, large.open("rb") as b:
            assert default_workers(a.fileno()) == 1
            assert default_workers(b.fileno()) == max(1, min(MAX_WORKERS, cpus))
            b.seek(1)  # what is left to read counts
            assert default_workers(b.fileno()) == 1
        assert default_workers(read) == 1  # a pipe: its size is unknown
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            '{"error":{"code":"unavailable","message":"the database failed"}}\n',
            {"code": "unavailable", "message": "the database failed"},
        ),
        (
            "Traceback (most recent call last):\n  ...\nMemoryError\n",
            {
                "code": "unexpected",
                "message": "apply worker 2 exited with status 1 before answering its lines: "
                "MemoryError",
            },
        ),
        (
            "",
            {
                "code": "unexpected",
                "message": "apply worker 2 exited with status 1 before answering its lines",
            },
        ),
    ],
    ids=["its-rejection", "its-last-words", "silent"],
)
def test_a_failed_worker_is_reported_by_its_own_rejection_else_as_unexpected(
    stderr: str, expected: dict[str, str]
) -> None:
    assert WorkerFailed(1, 1, stderr).report() == {"error": expected}
