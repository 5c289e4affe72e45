"""Request bodies: read within a size, parsed as the ledger parses `apply` lines (numbers kept
exactly as written, NaN refused), whatever the Content-Type says."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from domain import payload
from domain.commands import MAX_COMMAND_BYTES
from domain.errors import InvalidCommand, TooLarge

COMMAND_BODY_LIMIT = 2 * MAX_COMMAND_BYTES
"""A body over this is refused unread; under it, the command is measured as `apply` does
(compact JSON, 1 MiB), so pretty-printing a body does not push it over."""
BATCH_BODY_LIMIT = 16 << 20
MAX_BATCH = 1000


async def read(request: Request, limit: int) -> bytes:
    """The body, or `too_large` as soon as it passes `limit` bytes (never held whole).

    A client that hangs up before the whole body arrived is `invalid` like any rejection:
    the answer goes nowhere (the server writes nothing on a closed connection), and the
    server logs nothing, where starlette's ClientDisconnect was logged with a traceback."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidCommand("the client hung up before the end of the body") from None
    return b"".join(chunks)


def command_fields(body: bytes, *, optional: bool) -> dict[str, Any]:
    """A command's fields from a JSON object body; an empty body is `{}` when `optional`."""
    if optional and not body.strip():
        return {}
    value = _json(body)
    if not isinstance(value, dict):
        raise InvalidCommand(
            f"the body must be a JSON object of the command's fields, not {_kind(value)}"
        )
    return value


def batch_items(body: bytes) -> list[Any]:
    """The commands of a batch: a JSON array of at most MAX_BATCH `apply` objects."""
    value = _json(body)
    if not isinstance(value, list):
        raise InvalidCommand(
            'the body must be a JSON array of commands such as [{"command":"start","runId":...}]'
            f", not {_kind(value)}"
        )
    if len(value) > MAX_BATCH:
        raise TooLarge(f"the batch holds {len(value):,} commands; the limit is {MAX_BATCH:,}")
    return value


def _json(body: bytes) -> Any:
    if not body.strip():
        raise InvalidCommand("the body is empty; send a JSON value")
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise InvalidCommand(f"the body is not UTF-8: {error}") from None
    return payload.loads(text, what="the body")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a " + ("string" if isinstance(value, str) else "scalar")


def _too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(f"the body is {size:,} bytes or more; the limit is {limit:,} bytes")
