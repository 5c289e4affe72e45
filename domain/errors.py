"""Rejections: every rule the ledger enforces fails with one of these.

    RunLedgerError            code            when
    ├── InvalidCommand        invalid         a field missing, malformed or out of range
    ├── RunNotFound           not_found       no run has that id
    ├── IllegalTransition     illegal_transition  the command is not allowed from the status
    ├── OutOfOrder            out_of_order    `at` is earlier than the run's latest event
    ├── Conflict              conflict        a create or idempotency key clashes; retries ran out
    └── TooLarge              too_large       one command's JSON is over the size limit

A rejected command appends nothing. The code is stable; the message is for a person.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RunLedgerError(Exception):
    code: ClassVar[str] = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class InvalidCommand(RunLedgerError):
    code = "invalid"


class RunNotFound(RunLedgerError):
    code = "not_found"

    def __init__(self, run_id: str, detail: str = "") -> None:
        super().__init__(f"no run with id {run_id!r}{detail}")
        self.run_id = run_id


class IllegalTransition(RunLedgerError):
    code = "illegal_transition"


class OutOfOrder(RunLedgerError):
    code = "out_of_order"


class Conflict(RunLedgerError):
    code = "conflict"


class TooLarge(RunLedgerError):
    code = "too_large"
