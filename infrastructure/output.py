"""What the command line prints: JSON for programs, one value a line, UTF-8 whatever the locale."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, Any, cast

from domain import payload
from domain.errors import RunLedgerError


def write_json(stream: IO[str], value: Any) -> None:
    write_all(stream, (payload.dumps(value) + "\n").encode())


def write_lines(stream: IO[str], lines: Iterable[str]) -> None:
    """Lines of JSON text already written out, in one write."""
    written = list(lines)
    if written:
        write_all(stream, ("\n".join(written) + "\n").encode())


def write_text(stream: IO[str], text: str) -> None:
    """Text for a person (tables), in UTF-8."""
    write_all(stream, (text + "\n").encode())


def write_all(stream: IO[str] | IO[bytes], data: bytes) -> None:
    """Writes all of `data` after what the stream holds, straight to its file descriptor
    when it has one. (Python's buffered writer, interrupted in a blocking write to a full
    pipe by a signal whose handler returns, as `apply`'s does (infrastructure/interrupts.py),
    drops the rest of the data without an error: on Python 3.11, 65,536 bytes of 188,000
    arrived.)"""
    stream.flush()
    binary = cast("IO[bytes]", getattr(stream, "buffer", stream))
    binary.flush()
    try:
        fd = binary.fileno()
    except (AttributeError, OSError, ValueError):  # no descriptor (a stream in memory)
        binary.write(data)
        binary.flush()
        return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def reject(error: RunLedgerError) -> None:
    """A rejection: one JSON object on standard error."""
    write_json(sys.stderr, {"error": error.as_json()})
