"""Every error as `application/problem+json` (RFC 9457), carrying a stable `code`.

    code                 status  when
    invalid              400     a rejected command (InvalidCommand); a malformed parameter,
                                 header or body (never 422)
    unauthorized         401     no bearer token, or one the service does not know
    forbidden            403     a token used on a workspace path that is not its own
    not_found            404     no such run, or a run of another workspace; no such route
    method_not_allowed   405     a route that does not take the method
    illegal_transition   409  \
    conflict             409   > the contract's rejections (shared/design/lifecycle.md)
    out_of_order         409  /
    too_large            413     a command over 1 MiB; a body or a batch over its limit
    read_model_behind    503     `minPosition` not applied by the read model within the wait
    unavailable          503     the database cannot be reached
    unexpected           500     a bug (never on purpose)

The body: `{"type","title","status","detail","code"}`; `type` is `urn:runledger:problem:CODE`.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Mapping
from typing import NamedTuple

from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from domain import payload
from domain.errors import RunLedgerError

MEDIA_TYPE = "application/problem+json"


def unavailable() -> tuple[type[Exception], ...]:
    """What a database that cannot be reached (or is locked) raises: 503, try again. The
    driver's own errors only of a driver loaded: a ledger on SQLite never loads psycopg."""
    kinds: tuple[type[Exception], ...] = (PersistenceError, sqlite3.OperationalError)
    psycopg = sys.modules.get("psycopg")
    return kinds if psycopg is None else (*kinds, psycopg.OperationalError)


class Kind(NamedTuple):
    status: int
    title: str


KINDS: Mapping[str, Kind] = {
    "invalid": Kind(400, "The request is invalid"),
    "unauthorized": Kind(401, "A valid bearer token is required"),
    "forbidden": Kind(403, "The token may not use this workspace"),
    "not_found": Kind(404, "Not found"),
    "method_not_allowed": Kind(405, "Method not allowed"),
    "illegal_transition": Kind(409, "The command is not allowed from the run's status"),
    "conflict": Kind(409, "The command conflicts with what was recorded"),
    "out_of_order": Kind(409, "The command is earlier than the run's latest event"),
    "too_large": Kind(413, "The request is too large"),
    "read_model_behind": Kind(503, "The read model has not reached the position asked for"),
    "unavailable": Kind(503, "The database is unavailable"),
    "unexpected": Kind(500, "Unexpected error"),
}


class Problem(BaseModel):
    """An error (RFC 9457): branch on `code`, show `detail` to a person."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class ServiceProblem(Exception):
    """An error of the service itself, beyond the contract's rejections."""

    def __init__(self, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.headers = code, detail, dict(headers or {})


def problem(code: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    kind = KINDS.get(code, KINDS["invalid"])
    body = {
        "type": f"urn:runledger:problem:{code}",
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        "code": code,
    }
    return Response(
        payload.dumps(body), status_code=kind.status, media_type=MEDIA_TYPE, headers=headers
    )


def to_problem(request: Request, error: Exception) -> Response:
    """The problem for any error that reaches the application's edge."""
    if isinstance(error, RunLedgerError):
        return problem(error.code, error.message)
    if isinstance(error, ServiceProblem):
        return problem(error.code, error.detail, error.headers)
    if isinstance(error, RequestValidationError):
        return problem("invalid", _describe(error))
    if isinstance(error, HTTPException):
        return _http_problem(request, error)
    if isinstance(error, unavailable()):
        return problem("unavailable", f"the database failed: {error}", {"Retry-After": "1"})
    return problem("unexpected", f"{type(error).__name__}: {error}".strip())


def install(app: FastAPI) -> None:
    handled: tuple[type[Exception], ...] = (RunLedgerError, ServiceProblem, *unavailable())
    for kind in (*handled, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, to_problem)
    app.add_exception_handler(Exception, to_problem)  # still logged by the server


def _http_problem(request: Request, error: HTTPException) -> Response:
    headers = dict(error.headers or {})
    if error.status_code == 404:
        return problem("not_found", f"no route {request.url.path!r}", headers)
    if error.status_code == 405:
        allowed = headers.get("Allow") or headers.get("allow", "")
        detail = f"{request.url.path!r} does not take {request.method}; it takes {allowed}"
        return problem("method_not_allowed", detail, headers)
    code = next((c for c, kind in KINDS.items() if kind.status == error.status_code), "invalid")
    return problem(code, str(error.detail), headers)


_WHERE = {"query": "query parameter", "header": "header", "path": "path parameter"}


def _describe(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors():
        where, *names = [str(part) for part in item.get("loc", ())] or ["request"]
        name = ".".join(names)
        problems.append(f"{_WHERE.get(where, where)} {name}: {item.get('msg', 'is invalid')}")
    return "; ".join(problems) or "the request is invalid"
