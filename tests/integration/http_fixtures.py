"""The HTTP service on a real loopback socket (uvicorn in a thread of the test process, so the
ledger's clock stays the test's), on each backend, with two workspaces' tokens.

One service a backend serves a whole module: each test makes runs of its own (`new_id`), so
tests do not see each other's runs; a list or stats test filters on a subject of its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from infrastructure.application import Ledger
from infrastructure.http import server
from infrastructure.http.app import create_app
from infrastructure.http.auth import Tokens, hash_token
from infrastructure.http.service import Settings
from infrastructure.postgres import throwaway_database
from tests.builders import FakeClock, create
from tests.conftest import BACKENDS

WORKSPACE_A, WORKSPACE_B = "ws_a", "ws_b"
TOKEN_A, TOKEN_B = "rl_token_of_workspace_a", "rl_token_of_workspace_b"
TOKENS = Tokens.parse(
    f"{hash_token(TOKEN_A)} {WORKSPACE_A}\n{hash_token(TOKEN_B)} {WORKSPACE_B}\n", source="test"
)
STARTUP_SECONDS = 10


def new_id(prefix: str = "run") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def runs_path(workspace: str = WORKSPACE_A) -> str:
    return f"/v1/workspaces/{workspace}/runs"


def run_path(run_id: str, workspace: str = WORKSPACE_A) -> str:
    return f"{runs_path(workspace)}/{run_id}"


def create_body(run_id: str | None, **fields: Any) -> dict[str, Any]:
    """A create's body: `builders.create` without what the path gives."""
    command = create(run_id, **fields)
    del command["command"]
    if "workspaceId" not in fields:
        del command["workspaceId"]
    return command


def problem(response: httpx.Response, status: int) -> str:
    """The code of an RFC 9457 problem answered with `status`, or an AssertionError."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert sorted(body) == ["code", "detail", "status", "title", "type"], body
    assert body["status"] == status, body
    assert body["type"] == f"urn:runledger:problem:{body['code']}", body
    assert body["detail"].strip(), body
    return str(body["code"])


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port) until the block ends; yields its URL."""
    sock = server.listen("127.0.0.1", 0)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not instance.started:
            assert thread.is_alive(), "the server stopped as it started"
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.01)
        yield server.url_of(sock)
    finally:
        instance.should_exit = True
        thread.join(STARTUP_SECONDS)
        sock.close()


@contextmanager
def database(backend: str, folder: Path, postgres_server_url: str | None) -> Iterator[str]:
    """An empty database of its own on the backend, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'http-{uuid.uuid4().hex[:8]}.db'}"
        return
    assert postgres_server_url is not None
    with throwaway_database(postgres_server_url, "runledger_http") as url:
        yield url


@dataclass
class Api:
    """The service under test and a client for each kind of caller."""

    url: str
    ledger: Ledger
    clock: FakeClock
    a: httpx.Client
    """Holds workspace A's token."""
    b: httpx.Client
    """Holds workspace B's token."""
    anonymous: httpx.Client


@contextmanager
def api_on(url: str, settings: Settings) -> Iterator[Api]:
    clock = FakeClock()
    with Ledger(url, clock=clock) as ledger, serving(create_app(ledger, settings)) as base:
        clients = [
            httpx.Client(base_url=base, timeout=30, headers=headers)
            for headers in (
                {"Authorization": f"Bearer {TOKEN_A}"},
                {"Authorization": f"Bearer {TOKEN_B}"},
                {},
            )
        ]
        try:
            yield Api(base, ledger, clock, *clients)
        finally:
            for client in clients:
                client.close()


@pytest.fixture(scope="module", params=BACKENDS)
def http_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def database_of_module(
    http_backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    server_url = None
    if http_backend == "postgres":
        server_url = str(request.getfixturevalue("postgres_server_url"))
    with database(http_backend, tmp_path_factory.mktemp("http"), server_url) as url:
        yield url


@pytest.fixture
def fresh_database(
    http_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An empty database for one test, on the module's backend."""
    server_url = None
    if http_backend == "postgres":
        server_url = str(request.getfixturevalue("postgres_server_url"))
    with database(http_backend, tmp_path, server_url) as url:
        yield url


@pytest.fixture(scope="module")
def api(database_of_module: str) -> Iterator[Api]:
    """The service with both tokens and the projection beside it."""
    with api_on(database_of_module, Settings(TOKENS, with_projection=True)) as service:
        yield service
