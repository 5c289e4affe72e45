"""`apply`: one command a JSON line in, one answer a JSON line out, in order.

Lines are split on `\\n` only (a JSON string may hold U+2028), read with a bounded buffer so
that an over-long line is refused without being held in memory, and every line is tried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from domain import payload
from domain.commands import MAX_COMMAND_BYTES
from domain.errors import InvalidCommand, RunLedgerError, TooLarge
from infrastructure.application import Ledger
from projections.fold import to_view

_CHUNK = 1 << 16


def read_lines(stream: IO[bytes], limit: int = MAX_COMMAND_BYTES) -> Iterator[bytes | TooLarge]:
    """The stream's lines without their `\\n`; a line over `limit` bytes is a TooLarge."""
    while True:
        line = stream.readline(limit + 2)
        if not line:
            return
        if line.endswith(b"\n"):
            yield line[:-1]
            continue
        if len(line) <= limit + 1:  # the last line, with no newline after it
            yield line
            return
        size = len(line)
        while line and not line.endswith(b"\n"):  # skip the rest of the long line
            line = stream.readline(_CHUNK)
            size += len(line)
        yield TooLarge(f"the line is {size:,} bytes or more; the limit is {limit:,} bytes")


def answer(ledger: Ledger, line: bytes | TooLarge, *, first: bool = False) -> dict[str, Any]:
    """The answer to one line: `{"ok":true,"run":...}` or `{"ok":false,"error":...}`."""
    try:
        if isinstance(line, TooLarge):
            raise line
        state = ledger.submit(_parse_line(line, first=first), size=len(line))
    except RunLedgerError as error:
        return {"ok": False, "error": error.as_json()}
    return {"ok": True, "run": to_view(state).to_json_dict()}


def _parse_line(line: bytes, *, first: bool) -> dict[str, Any]:
    if len(line) > MAX_COMMAND_BYTES:
        raise TooLarge(f"the line is {len(line):,} bytes; the limit is {MAX_COMMAND_BYTES:,}")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidCommand(f"the line is not UTF-8: {error}") from None
    if first:
        text = text.removeprefix("\ufeff")
    data = payload.loads(text, what="the line")
    if not isinstance(data, dict):
        raise InvalidCommand('each line must be a JSON object such as {"command":"start",...}')
    return data
