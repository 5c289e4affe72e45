"""What the command line prints: JSON for programs, one value a line, UTF-8 whatever the locale."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from domain import payload
from domain.errors import RunLedgerError


def write_json(stream: IO[str], value: Any) -> None:
    stream.flush()
    stream.buffer.write((payload.dumps(value) + "\n").encode())  # type: ignore[attr-defined]
    stream.buffer.flush()  # type: ignore[attr-defined]


def write_lines(stream: IO[str], lines: Iterable[str]) -> None:
    """Lines of JSON text already written out, in one write."""
    stream.flush()
    written = list(lines)
    text = "\n".join(written) + "\n" if written else ""
    stream.buffer.write(text.encode())  # type: ignore[attr-defined]
    stream.buffer.flush()  # type: ignore[attr-defined]


def write_text(stream: IO[str], text: str) -> None:
    """Text for a person (tables), in UTF-8."""
    stream.flush()
    stream.buffer.write((text + "\n").encode())  # type: ignore[attr-defined]
    stream.buffer.flush()  # type: ignore[attr-defined]


def reject(error: RunLedgerError) -> None:
    """A rejection: one JSON object on standard error."""
    write_json(sys.stderr, {"error": error.as_json()})
