"""Test data: commands and moments built from defaults, so tests state only what matters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import timestamps

T0 = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
"""The moment test histories start at; the fake clock starts one day later."""


def at(seconds: float) -> str:
    """The ISO text of T0 plus some seconds."""
    return timestamps.to_iso(T0 + timedelta(seconds=seconds))


@dataclass
class FakeClock:
    """The ledger's clock, under the test's control."""

    now: datetime = field(default_factory=lambda: T0 + timedelta(days=1))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def create(run_id: str | None = "run_1", **fields: Any) -> dict[str, Any]:
    """A valid `create` command as `apply` reads it; `fields` override or add (None drops)."""
    command: dict[str, Any] = {
        "command": "create",
        "runId": run_id,
        "workspaceId": "ws_1",
        "subjectId": "wf_checkout",
        "userId": "user_1",
    }
    command |= fields
    return {key: value for key, value in command.items() if value is not None}


def command(name: str, run_id: str = "run_1", **fields: Any) -> dict[str, Any]:
    """A transition command (`start`, `complete`, `timeOut`, ...) as `apply` reads it."""
    if name == "fail":
        fields.setdefault("error", "boom")
    if name == "linkCfWorkflow":
        fields.setdefault("cfWorkflowId", "cf_1")
    return {"command": name, "runId": run_id, **fields}
