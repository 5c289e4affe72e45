"""The `runledger` command as a user runs it: the installed console script, in its own process.

`run_cli` runs it in the test's own directory with no database chosen (no `--db`, and
RUNLEDGER_DATABASE_URL removed from the environment); `runledger` runs it with `--db` set to
the empty database of the backend under test. Seeding goes through `apply`, one process for
many commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from domain import payload

RUNLEDGER = Path(sys.executable).parent / "runledger"
TIMEOUT_SECONDS = 60
DATABASE_URL_VARIABLE = "RUNLEDGER_DATABASE_URL"


"""The view's keys: the seed's WorkflowRun, in its order."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Standard output as one JSON value."""
        return payload.loads(self.stdout)

    def lines(self) -> list[Any]:
        """Standard output as JSON lines, split on `\\n` only (U+2028 may sit inside a line)."""
        if not self.stdout:
            return []
        assert self.stdout.endswith("\n"), f"the output does not end its last line: {self!r}"
        return [payload.loads(line) for line in self.stdout[:-1].split("\n")]


def rejected(result: Result) -> str:
    """The code of a rejection printed as the contract says, or an AssertionError."""
    assert "Traceback" not in result.stderr, result.stderr
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr.endswith("\n"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    printed = json.loads(result.stderr)
    assert list(printed) == ["error"], printed
    error = printed["error"]
    assert sorted(error) == ["code", "message"], printed
    assert isinstance(error["message"], str), printed
    assert error["message"].strip(), printed
    return str(error["code"])


def json_line(data: Mapping[str, Any], **raw: str) -> bytes:
    """One `apply` line in UTF-8, without its newline; `raw` fields are JSON text spliced in
    as written, for what no Python value prints (NaN, 1.10, a 100,000-deep nesting)."""
    text = json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"))
    for key, value in raw.items():
        text = f"{text[:-1]},{json.dumps(key)}:{value}}}"
    return text.encode()


def json_lines(*lines: Mapping[str, Any] | bytes) -> bytes:
    """The text `apply` reads: each command (or line already encoded) on a line of its own."""
    encoded = [line if isinstance(line, bytes) else json_line(line) for line in lines]
    return b"".join(line + b"\n" for line in encoded)


@dataclass(frozen=True)
class Cli:
    """Runs `runledger` in `cwd`, with `--db db` first when a database is given."""

    cwd: Path
    db: str | None = None

    def __call__(
        self,
        *args: str | bytes,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        environment = {k: v for k, v in os.environ.items() if k != DATABASE_URL_VARIABLE}
        environment |= env or {}
        prefix: list[str | bytes] = ["--db", self.db] if self.db is not None else []
        completed = subprocess.run(
            [str(RUNLEDGER), *prefix, *args],
            input=stdin.encode() if isinstance(stdin, str) else stdin or b"",
            capture_output=True,
            cwd=self.cwd,
            env=environment,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        return Result(
            completed.returncode,
            completed.stdout.decode("utf-8"),
            completed.stderr.decode("utf-8"),
        )

    def apply(self, *commands: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Seeds the ledger: every command must be accepted; returns the runs printed."""
        result = self("apply", stdin=json_lines(*commands))
        answers = result.lines()
        assert (result.returncode, result.stderr) == (0, ""), result
        assert [answer["ok"] for answer in answers] == [True] * len(commands), answers
        return [answer["run"] for answer in answers]

    def history(self, run_id: str) -> list[dict[str, Any]]:
        result = self("history", run_id)
        assert (result.returncode, result.stderr) == (0, ""), result
        return result.lines()


@pytest.fixture
def run_cli(tmp_path: Path) -> Cli:
    """`runledger` in the test's directory, with no database chosen."""
    return Cli(cwd=tmp_path)


@pytest.fixture
def runledger(tmp_path: Path, database_url: str) -> Cli:
    """`runledger --db URL` on the empty database of the backend under test."""
    return Cli(cwd=tmp_path, db=database_url)
