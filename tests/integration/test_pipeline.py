"""`apply`'s pipeline: a group is decided while the one before is saved (on PostgreSQL), and
every group still comes back whole, in order, as `execute_many` would have answered it."""

from __future__ import annotations

from typing import Any

from domain import commands
from domain.commands import AnyCommand
from domain.errors import RunLedgerError
from infrastructure.application import Ledger, Pipeline
from infrastructure.decisions import Outcome
from projections.fold import RunState
from tests.builders import command, create


def parsed(*lines: dict[str, Any]) -> list[AnyCommand]:
    return [commands.parse(line) for line in lines]


def answered(outcomes: list[Outcome]) -> list[str]:
    """Each outcome as `status vN`, or the rejection's code."""
    return [
        outcome.code
        if isinstance(outcome, RunLedgerError)
        else f"{outcome.status} v{outcome.version}"
        for outcome in outcomes
    ]


def test_runs_that_span_groups_come_back_group_by_group_in_order(database_url: str) -> None:
    groups = [
        parsed(create("run_1"), create("run_2")),
        parsed(command("start", "run_1"), command("start", "run_2")),
        parsed(command("complete", "run_1"), command("start", "run_2")),  # the last refused
        parsed(command("wait", "run_2"), create("run_3")),
    ]
    with Ledger(database_url) as ledger:
        pipeline: Pipeline[int] = Pipeline(ledger)
        done = []
        for tag, group in enumerate(groups):
            done += pipeline.push(tag, group)
        done += pipeline.flush()
        pipeline.close()

        assert [tag for tag, _ in done] == [0, 1, 2, 3]
        assert [answered(outcomes) for _, outcomes in done] == [
            ["pending v1", "pending v1"],
            ["running v2", "running v2"],
            ["completed v3", "illegal_transition"],
            ["waiting v3", "pending v1"],
        ]
        assert [e.originator_version for e in ledger.history("run_2")] == [1, 2, 3]


def test_a_group_refused_in_flight_is_decided_again_and_so_is_the_one_decided_on_it(
    database_url: str,
) -> None:
    with Ledger(database_url) as ledger, Ledger(database_url) as other:
        ledger.submit(create("run_1"))  # the ledger knows run_1 pending, and trusts that
        other.submit(command("start", "run_1"))  # another writer moves it on behind its back
        pipeline: Pipeline[str] = Pipeline(ledger)

        done = pipeline.push("fail", parsed(command("fail", "run_1", error="lost")))
        done += pipeline.push(
            "link", parsed(command("linkCfWorkflow", "run_1", cfWorkflowId="cf_9"))
        )
        done += pipeline.flush()
        pipeline.close()

        assert [(tag, answered(outcomes)) for tag, outcomes in done] == [
            ("fail", ["failed v3"]),
            ("link", ["failed v4"]),
        ]
        linked = done[1][1][0]
        assert isinstance(linked, RunState)
        assert linked.cf_workflow_id == "cf_9"
        assert [type(e).__name__ for e in ledger.history("run_1")] == [
            "RunCreated",
            "RunStarted",
            "RunFailed",
            "CfWorkflowLinked",
        ]
