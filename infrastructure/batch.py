"""`apply`: one command a JSON line in, one answer a JSON line out, in order.

Lines are split on `\\n` only (a JSON string may hold U+2028). The lines already read are
decided together and saved in one transaction, up to `GROUP_SIZE` at a time: a file goes in
large groups, while a slow pipe gets each answer as soon as its line arrives. A line over the
size limit is refused without being held in memory; every line is tried.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from domain import commands, payload
from domain.commands import MAX_COMMAND_BYTES, AnyCommand
from domain.errors import InvalidCommand, RunLedgerError, TooLarge
from infrastructure.application import GROUP_SIZE
from infrastructure.decisions import Outcome
from projections.fold import view_text

_READ = 1 << 16

Line = bytes | TooLarge
Parsed = AnyCommand | RunLedgerError


def line_groups(
    fd: int,
    *,
    limit: int = MAX_COMMAND_BYTES,
    group_size: int = GROUP_SIZE,
    on_idle: Callable[[], object] | None = None,
) -> Iterator[list[Line]]:
    """Groups of the lines read from a file descriptor: every complete line in hand, up to
    `group_size`, before reading (and perhaps waiting for) more. `on_idle` is called before
    a read that would wait (a pipe with nothing in it yet)."""
    buffer, start, skipped = b"", 0, -1  # skipped >= 0: bytes of an over-long line so far
    while True:
        if on_idle is not None and not _readable(fd):
            on_idle()
        chunk = os.read(fd, _READ)
        buffer = buffer[start:] + chunk
        start = 0
        group: list[Line] = []
        while (end := buffer.find(b"\n", start)) >= 0:
            group.append(_line(buffer[start:end], skipped, limit))
            start, skipped = end + 1, -1
            if len(group) == group_size:
                yield group
                group = []
        if group:
            yield group
        if len(buffer) - start > limit:  # no newline yet and already too long: drop it
            skipped = max(skipped, 0) + len(buffer) - start
            start = len(buffer)
        if not chunk:
            if start < len(buffer) or skipped >= 0:
                yield [_line(buffer[start:], skipped, limit)]
            return


def _readable(fd: int) -> bool:
    """Whether a read would return at once (a regular file's always does)."""
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def open_input(name: str) -> IO[bytes]:
    """The file a command reads: a path, or `-` for standard input."""
    if name == "-":
        if sys.stdin is None:  # closed (`<&-`)
            raise InvalidCommand("standard input is closed; give a FILE, or open it")
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as error:
        raise InvalidCommand(f"cannot read {name!r}: {error.strerror}") from None


def read_lines(stream: IO[bytes], limit: int = MAX_COMMAND_BYTES) -> Iterator[Line]:
    """The stream's lines one by one (it must not have been read from yet)."""
    for group in line_groups(stream.fileno(), limit=limit):
        yield from group


def _line(line: bytes, skipped: int, limit: int) -> Line:
    size = len(line) + max(skipped, 0)
    if size > limit:
        return TooLarge(f"the line is {size:,} bytes; the limit is {limit:,} bytes")
    return line


def parse(group: list[Line], *, first: bool = False) -> list[Parsed]:
    """Each line of a group as a command, or the rejection that stops it before the ledger."""
    parsed: list[Parsed] = []
    for index, line in enumerate(group):
        try:
            if isinstance(line, TooLarge):
                raise line
            data = _parse_line(line, first=first and index == 0)
            parsed.append(commands.parse(data, size=len(line)))
        except RunLedgerError as error:
            parsed.append(error)
    return parsed


def accepted(parsed: list[Parsed]) -> list[AnyCommand]:
    """The commands of a parsed group, for the ledger."""
    return [item for item in parsed if not isinstance(item, RunLedgerError)]


def merged(parsed: list[Parsed], executed: list[Outcome]) -> list[Outcome]:
    """Every line's outcome in order: the rejection of a line that did not parse, else what
    the ledger answered to its command (`executed`, in the order of `accepted`)."""
    answers = iter(executed)
    return [item if isinstance(item, RunLedgerError) else next(answers) for item in parsed]


def answer(outcome: Outcome) -> str:
    """A line's answer as JSON text: `{"ok":true,"run":...}` or `{"ok":false,"error":...}`.
    The view is written straight from the state (`view_text`), without a dict between."""
    if isinstance(outcome, RunLedgerError):
        return payload.dumps({"ok": False, "error": outcome.as_json()})
    return f'{{"ok":true,"run":{view_text(outcome)}}}'


def _parse_line(line: bytes, *, first: bool) -> dict[str, Any]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidCommand(f"the line is not UTF-8: {error}") from None
    if first:
        text = text.removeprefix("\ufeff")
    if not text or text.isspace():  # (`strip` would copy the line)
        raise InvalidCommand("the line is empty; each line must be one JSON object")
    data = payload.loads(text, what="the line")
    if not isinstance(data, dict):
        raise InvalidCommand('each line must be a JSON object such as {"command":"start",...}')
    return data
