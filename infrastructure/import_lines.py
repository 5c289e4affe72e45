"""Reading an export back, for `import`: its lines, each checked against the schema
(infrastructure/exchange.py) and as the command it records.

Lines are split on `\\n` only. A line is refused (with a message naming the line, and its
position, run and version when it gives them) if it is not UTF-8 JSON, not an object, over
`LINE_LIMIT` bytes, of another `schemaVersion`, or has a key the schema does not know.
`position`, `eventType`, `recordedAt` and `firstRecordedAt` may be left out (`eventType`,
when given, must match `event`); `at` is required; the rest is checked as the command it
records: identifiers, payload limits, the command's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from domain import commands, payload, timestamps
from domain.commands import MAX_COMMAND_BYTES, CreateRun, RunCommand
from domain.errors import InvalidCommand, RunLedgerError, TooLarge
from domain.events import EVENT_FOR, RunCreated
from domain.status import Command
from infrastructure.exchange import SCHEMA_VERSION

LINE_LIMIT = MAX_COMMAND_BYTES + (1 << 16)
"""The longest line read: a command at its size limit, and room for the recording keys."""

_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def read_lines(stream: IO[bytes], limit: int = LINE_LIMIT) -> Iterator[bytes | TooLarge]:
    """The stream's lines without their `\\n`, split on `\\n` only; a line over `limit` bytes
    is a TooLarge, skipped without being held in memory."""
    while line := stream.readline(limit + 1):
        if line.endswith(b"\n"):
            yield line[:-1]
            continue
        if len(line) <= limit:  # the last line, with no newline after it
            yield line
            return
        size = len(line)
        while line and not line.endswith(b"\n"):
            line = stream.readline(1 << 16)
            size += len(line)
        yield TooLarge(f"the line is {size:,} bytes or more; the limit is {limit:,} bytes")


@dataclass(frozen=True)
class ImportLine:
    """One line of an export, checked against the schema and as the command it records."""

    number: int
    position: int | None
    run_id: str
    version: int
    at: datetime
    command: CreateRun | RunCommand
    recorded_at: datetime | None
    first_recorded_at: datetime | None

    @property
    def where(self) -> str:
        """The line, its position, run and version, as a rejection names them."""
        position = "" if self.position is None else f", position {self.position}"
        return f"line {self.number}{position} (run {self.run_id!r}, version {self.version})"

    @property
    def source_recorded_at(self) -> datetime | None:
        """When a ledger first recorded the event, as far as the line says."""
        return self.first_recorded_at or self.recorded_at


def read_line(text: bytes, number: int) -> ImportLine:
    """Parses one line; raises InvalidCommand or TooLarge, the message naming the line (and
    its run and version when the line gives them)."""
    data = _json_object(text, number)
    where = _where(data, number)
    try:
        return _read(data, number)
    except RunLedgerError as error:
        error.message = f"{where}: {error.message}"
        error.args = (error.message,)
        raise


def _json_object(text: bytes, number: int) -> dict[str, Any]:
    what = f"line {number}"
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidCommand(f"{what} is not UTF-8: {error}") from None
    if number == 1:
        decoded = decoded.removeprefix("\ufeff")
    data = payload.loads(decoded, what=what)
    if not isinstance(data, dict):
        raise InvalidCommand(f"{what} is not a JSON object; an export has one event a line")
    if _ESCAPED_SURROGATE.search(text) and _has_lone_surrogate(data):
        raise InvalidCommand(f"{what} holds a lone UTF-16 surrogate (\\ud800 to \\udfff)")
    return data


def _has_lone_surrogate(data: dict[str, Any]) -> bool:
    try:
        payload.dumps(data).encode()
    except UnicodeEncodeError:
        return True
    return False


def _where(data: dict[str, Any], number: int) -> str:
    where = f"line {number}"
    if _is_whole(position := data.get("position")):
        where += f", position {position}"
    run_id, version = data.get("runId"), data.get("version")
    if isinstance(run_id, str) and _is_whole(version):
        where += f" (run {run_id[:140]!r}, version {version})"
    return where


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read(data: dict[str, Any], number: int) -> ImportLine:
    fields = dict(data)
    schema = fields.pop("schemaVersion", None)
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise InvalidCommand(
            f"schemaVersion must be {SCHEMA_VERSION}, not {payload.dumps(schema)}: this "
            f"runledger reads exports of schema version {SCHEMA_VERSION}"
        )
    version = _integer(fields.pop("version", None), "version")
    position = fields.pop("position", None)
    position = None if position is None else _integer(position, "position")
    event_type = fields.pop("eventType", None)
    recorded_at = _moment(fields.pop("recordedAt", None), "recordedAt")
    first_recorded_at = _moment(fields.pop("firstRecordedAt", None), "firstRecordedAt")
    name = fields.pop("event", None)
    if name == Command.CREATE.value:
        for key in ("actor", "reason"):
            if fields.pop(key, None) is not None:
                raise InvalidCommand(f"a create carries no {key}")
    command = commands.parse({"command": name, **fields})
    if command.run_id is None:
        raise InvalidCommand("runId is required")
    if command.at is None:
        raise InvalidCommand("at is required: an imported event keeps the time it happened")
    expected = RunCreated if isinstance(command, CreateRun) else EVENT_FOR[command.kind]
    if event_type is not None and event_type != expected.__name__:
        raise InvalidCommand(
            f"eventType {payload.dumps(event_type)} does not match event {name!r} "
            f"({expected.__name__})"
        )
    if (version == 1) != isinstance(command, CreateRun):
        raise InvalidCommand("version 1 of a run is its create, and a create is version 1")
    return ImportLine(
        number=number,
        position=position,
        run_id=command.run_id,
        version=version,
        at=command.at,
        command=command,
        recorded_at=recorded_at,
        first_recorded_at=first_recorded_at,
    )


def _integer(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidCommand(f"{key} must be a whole number from 1, not {payload.dumps(value)}")
    return value


def _moment(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCommand(f"{key} must be an ISO-8601 string, not {payload.dumps(value)}")
    return timestamps.parse(value, field=key)
