"""The demo, the front door, runs and prints its summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parents[2] / "scripts" / "demo.py"


def test_the_demo_records_a_day_and_prints_its_summary_from_the_read_model(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for heading in ("Runs by status", "Durations of finished runs", "One run's history"):
        assert heading in result.stdout
    applied = next(line for line in result.stdout.splitlines() if line.startswith("read model:"))
    position, head = applied.removeprefix("read model: ").split(" events applied")[0].split(" of ")
    assert position == head
    assert (tmp_path / ".demo" / "runledger.db").exists()
