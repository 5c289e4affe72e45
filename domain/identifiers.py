"""Identifiers, and the run ids the ledger makes."""

from __future__ import annotations

import hashlib
import os
import re
import time

from domain.errors import InvalidCommand

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def check(value: str, *, field: str) -> str:
    if IDENTIFIER.fullmatch(value) is None:
        raise InvalidCommand(
            f"{field} must be 1 to 128 characters of letters, digits and _ . : -, "
            f"starting with a letter or a digit; got {value[:140]!r}"
        )
    return value


def _crockford(number: int, length: int) -> str:
    return "".join(_CROCKFORD[(number >> (5 * i)) & 31] for i in reversed(range(length)))


def new_run_id(now_ms: int | None = None) -> str:
    """`run_` and a ULID: 48 bits of milliseconds then 80 random bits, 26 characters."""
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    randomness = int.from_bytes(os.urandom(10), "big")
    return "run_" + _crockford((millis << 80) | randomness, 26)


def derived_run_id(workspace_id: str, idempotency_key: str) -> str:
    """The id of the run a keyed create without `runId` makes: the same key, the same run."""
    digest = hashlib.sha256(f"{workspace_id}\x00{idempotency_key}".encode()).digest()
    return "run_" + _crockford(int.from_bytes(digest[:17], "big") >> 6, 26)
