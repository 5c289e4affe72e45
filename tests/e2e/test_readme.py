"""The README's tour runs as written: every `$` line of its console blocks, on each backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    status: int = 0


def steps() -> list[Step]:
    found: list[Step] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append(Step(line[2:]))
            elif match := re.fullmatch(r"\[exit (\d+)\]", line):
                found[-1].status = int(match[1])
            else:
                found[-1].expected.append(line)
    return found


def matches(expected: list[str], actual: list[str]) -> bool:
    """`...` stands for one or more lines that are not compared."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[n:]) for n in range(1, len(actual) + 1))
    return bool(actual) and actual[0] == expected[0] and matches(expected[1:], actual[1:])


def test_the_readme_has_a_tour() -> None:
    assert len(steps()) >= 10


def test_the_readme_tour_runs_as_written(database_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RUNLEDGER_DATABASE_URL"] = database_url

    for step in steps():
        result = subprocess.run(
            ["bash", "-c", step.command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == step.status, (step.command, result.stderr)
        assert matches(step.expected, result.stdout.splitlines()), (step.command, result.stdout)
        assert "Traceback" not in result.stderr
