"""A realistic day of runs, as `apply` commands: workflows, agents and swarms in a few
workspaces, child runs, pauses, waits, failures, cancellations, time-outs, and some
duplicate deliveries (the platform delivers at least once). Seeded, so every day is the same.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain import timestamps

WORKSPACES = ("ws_acme", "ws_globex", "ws_initech")
SUBJECTS = {
    "workflow": ("wf_checkout", "wf_invoice", "wf_onboarding", "wf_nightly_report"),
    "agent": ("agent_support", "agent_research", "agent_triage"),
    "swarm": ("swarm_market_scan", "swarm_code_review"),
}
ENDINGS = ("complete",) * 70 + ("fail",) * 12 + ("cancel",) * 6 + ("timeOut",) * 5
ERRORS = ("upstream 503 from payments", "tool call rejected: quota", "worker lost heartbeat")


@dataclass(order=True)
class Timed:
    at: datetime
    sequence: int
    command: dict[str, Any] = field(compare=False)


@dataclass
class Day:
    start: datetime
    seed: int = 7
    runs_per_workspace: int = 200
    _sequence: int = 0

    def commands(self) -> list[dict[str, Any]]:
        """Every command of the day, in the order the platform sent them."""
        rng = random.Random(self.seed)
        timed: list[Timed] = []
        for workspace in WORKSPACES:
            for index in range(self.runs_per_workspace):
                kind = rng.choices(("workflow", "agent", "swarm"), (6, 3, 1))[0]
                created = self.start + timedelta(seconds=rng.uniform(0, 23 * 3600))
                run_id = f"run_{workspace[3:]}_{index:05d}"
                timed += self._run(rng, workspace, run_id, kind, created, parent=None)
        timed.sort()
        return [item.command for item in timed]

    def _run(
        self,
        rng: random.Random,
        workspace: str,
        run_id: str,
        kind: str,
        created: datetime,
        parent: str | None,
    ) -> Iterator[Timed]:
        subject = rng.choice(SUBJECTS[kind])
        triggered_by = {"workflow": rng.choice(("user", "event", "workflow")), "agent": "agent"}
        yield self._timed(
            created,
            {
                "command": "create",
                "runId": run_id,
                "workspaceId": workspace,
                "subjectId": subject,
                "userId": f"user_{rng.randrange(1, 40):02d}",
                "parentRunId": parent,
                "mode": rng.choice(("async", "async", "sync")),
                "triggeredBy": "swarm" if parent else triggered_by.get(kind, "user"),
                "input": {"subject": subject, "priority": rng.choice(("low", "normal", "high"))},
                "idempotencyKey": f"create-{run_id}",
            },
        )
        at = created + timedelta(seconds=rng.expovariate(1 / 20))
        if rng.random() < 0.02:  # still queued at the end of the day
            return
        if rng.random() < 0.04:  # never picked up: cancelled or timed out while pending
            yield self._step(run_id, rng.choice(("cancel", "timeOut")), at + timedelta(hours=1))
            return
        yield self._step(run_id, "start", at, actor="system")
        if kind == "workflow":
            yield self._step(run_id, "linkCfWorkflow", at, cfWorkflowId=f"cf_{run_id[4:]}")
        if kind == "swarm":
            for child in range(rng.randint(2, 5)):
                child_at = at + timedelta(seconds=rng.uniform(1, 30))
                child_id = f"{run_id}_c{child}"
                yield from self._run(rng, workspace, child_id, "agent", child_at, parent=run_id)
        for _ in range(rng.choices((0, 1, 2), (6, 3, 1))[0]):
            at += timedelta(seconds=rng.expovariate(1 / 60))
            pause = rng.random() < 0.4
            yield self._step(
                run_id,
                "pause" if pause else "wait",
                at,
                reason="operator hold" if pause else rng.choice(("approval", "rate limit")),
            )
            at += timedelta(seconds=rng.expovariate(1 / (300 if pause else 90)))
            yield self._step(run_id, "resume", at)
        at += timedelta(seconds=rng.lognormvariate(3.5 if kind != "swarm" else 5, 1))
        if rng.random() < 0.08:  # still open at the end of the day
            if rng.random() < 0.5:
                yield self._step(run_id, rng.choice(("pause", "wait")), at, reason="at day's end")
            return
        ending = rng.choice(ENDINGS)
        fields: dict[str, Any] = {"idempotencyKey": f"end-{run_id}"}
        if ending == "complete":
            fields["output"] = {"ok": True, "tokens": rng.randrange(100, 20000)}
        elif ending == "fail":
            fields["error"] = rng.choice(ERRORS)
        step = self._step(run_id, ending, at, actor="system", **fields)
        yield step
        if rng.random() < 0.05:  # an at-least-once duplicate, a little later
            yield self._timed(at + timedelta(seconds=rng.uniform(1, 60)), dict(step.command))

    def _step(self, run_id: str, name: str, at: datetime, **fields: Any) -> Timed:
        return self._timed(at, {"command": name, "runId": run_id, **fields})

    def _timed(self, at: datetime, command: dict[str, Any]) -> Timed:
        at = timestamps.truncate(at)
        command = {key: value for key, value in command.items() if value is not None}
        command.setdefault("at", timestamps.to_iso(at))
        self._sequence += 1
        return Timed(at, self._sequence, command)
