"""`runledger runs | stats | tree | stuck` as a user runs them, on every backend: JSON on
standard output from the projected read model; bad filters exit 2 with `{"error":{...}}`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.builders import SEED_FIELDS, command, create, from_now
from tests.e2e.conftest import Cli, rejected

HOURS_AGO = 3 * 3600


def seeded(runledger: Cli) -> None:
    """A finished parent with two children, one of them idle for hours, in ws_1; one run in
    ws_2; then the read model caught up."""
    now = datetime.now(UTC)  # one reading: the durations below are exact
    runledger.apply(
        create("run_parent", at=from_now(-HOURS_AGO, now=now)),
        command("start", "run_parent", at=from_now(-HOURS_AGO + 1, now=now)),
        command("complete", "run_parent", at=from_now(-HOURS_AGO + 3, now=now)),
        create("run_idle", at=from_now(-HOURS_AGO + 10, now=now), parentRunId="run_parent"),
        command("start", "run_idle", at=from_now(-HOURS_AGO + 11, now=now)),
        create(
            "run_fresh", at=from_now(-60, now=now), parentRunId="run_parent", subjectId="wf_other"
        ),
        create("run_elsewhere", at=from_now(-HOURS_AGO, now=now), workspaceId="ws_2"),
    )
    result = runledger("project")
    assert result.returncode == 0, result


def test_runs_prints_a_page_newest_first_and_the_cursor_of_the_next(runledger: Cli) -> None:
    seeded(runledger)

    first = runledger("runs", "--workspace-id", "ws_1", "--limit", "2")
    cursor = first.json()["nextCursor"]
    rest = runledger("runs", "--workspace-id", "ws_1", "--limit", "2", "--cursor", cursor)
    pending = runledger(
        "runs", "--workspace-id", "ws_1", "--status", "pending", "--status", "running"
    )

    assert (first.returncode, first.stderr) == (0, "")
    assert [run["id"] for run in first.json()["runs"]] == ["run_fresh", "run_idle"]
    assert list(first.json()["runs"][0]) == SEED_FIELDS
    assert rest.json() == {"runs": [runledger("show", "run_parent").json()], "nextCursor": None}
    assert [run["id"] for run in pending.json()["runs"]] == ["run_fresh", "run_idle"]


def test_stats_prints_counts_durations_subjects_and_buckets_of_the_last_day(
    runledger: Cli,
) -> None:
    seeded(runledger)

    result = runledger("stats", "--workspace-id", "ws_1")

    assert (result.returncode, result.stderr) == (0, "")
    stats = result.json()
    assert list(stats) == [
        "workspaceId", "from", "to", "bucket",
        "countsByStatus", "durationMs", "bySubject", "buckets",
    ]  # fmt: skip
    assert stats["countsByStatus"] == {
        "pending": 1, "running": 1, "paused": 0, "waiting": 0,
        "completed": 1, "failed": 0, "cancelled": 0, "timed_out": 0,
    }  # fmt: skip
    assert stats["durationMs"] == {
        "count": 1, "p50": 2000, "p95": 2000, "p99": 2000, "max": 2000, "mean": 2000
    }  # fmt: skip
    assert [subject["subjectId"] for subject in stats["bySubject"]] == ["wf_checkout", "wf_other"]
    assert len(stats["buckets"]) in (24, 25)
    assert sum(bucket["created"] for bucket in stats["buckets"]) == 3


def test_tree_nests_a_runs_descendants_and_stuck_lists_the_idle_open_ones(
    runledger: Cli,
) -> None:
    seeded(runledger)

    tree = runledger("tree", "run_parent")
    stuck = runledger("stuck", "--workspace-id", "ws_1", "--idle-for", "2h")

    assert (tree.returncode, stuck.returncode) == (0, 0)
    root = tree.json()
    assert (root["run"]["status"], root["run"]["durationMs"]) == ("completed", 2000)
    assert [child["run"]["id"] for child in root["children"]] == ["run_idle", "run_fresh"]
    assert [run["id"] for run in stuck.json()["runs"]] == ["run_idle"]


def test_stats_by_day_over_too_many_days_advises_narrowing_the_window(run_cli: Cli) -> None:
    window = ("--from", "1990-01-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z")

    result = run_cli("stats", "--workspace-id", "ws_1", "--bucket", "day", *window)

    assert rejected(result) == "invalid"
    message = json.loads(result.stderr)["error"]["message"]
    assert "more than 10,000 days: narrow it (bring from and to closer)" in message
    assert "bucket" not in message


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["runs"], "invalid"),
        (["runs", "--workspace-id", "ws_1' OR 1=1 --"], "invalid"),
        (["runs", "--workspace-id", "ws_1", "--subject-id", "wf_%"], "invalid"),
        (["runs", "--workspace-id", "ws_1", "--status", "done"], "invalid"),
        (["runs", "--workspace-id", "ws_1", "--limit", "1001"], "invalid"),
        (["runs", "--workspace-id", "ws_1", "--limit", "many"], "invalid"),
        (["runs", "--workspace-id", "ws_1", "--cursor", "\u00e9\u00e9"], "invalid"),
        (["runs", "--workspace-id", "ws_1", "--created-from", "2026-11-24"], "invalid"),
        (["stats", "--workspace-id", "ws_1", "--bucket", "minute"], "invalid"),
        (["stats", "--workspace-id", "w" * 5000], "invalid"),
        (["stuck", "--workspace-id", "ws_1"], "invalid"),
        (["stuck", "--workspace-id", "ws_1", "--idle-for", "a while"], "invalid"),
        (["tree", "run_nowhere"], "not_found"),
    ],
)
def test_bad_or_hostile_filters_exit_2_with_the_error_on_standard_error(
    run_cli: Cli, args: list[str], code: str
) -> None:
    result = run_cli(*args)

    assert rejected(result) == code
