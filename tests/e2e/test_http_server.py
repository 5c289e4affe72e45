"""`runledger serve` as a real process on loopback, on SQLite and PostgreSQL: every endpoint,
every error status, two tokens kept apart, the projection beside the service or apart from
it, and a run read over HTTP equal to what `runledger show` prints."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain import payload, timestamps
from tests.conftest import BACKENDS
from tests.e2e.conftest import RUNLEDGER, Cli, rejected
from tests.e2e.served import (
    STOP_SECONDS,
    TOKEN_A,
    TOKEN_B,
    TOKEN_ENTRIES,
    WORKSPACE_A,
    WORKSPACE_B,
    Server,
    environment,
    serving,
    tokens_file,
)
from tests.integration.http_fixtures import database, new_id

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
RUNS_A, RUNS_B = f"/v1/workspaces/{WORKSPACE_A}/runs", f"/v1/workspaces/{WORKSPACE_B}/runs"


@pytest.fixture(scope="module", params=BACKENDS)
def served_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of its own for the module's server, on each backend."""
    server_url = None
    if request.param == "postgres":
        server_url = str(request.getfixturevalue("postgres_server_url"))
    with database(request.param, tmp_path_factory.mktemp("served"), server_url) as url:
        yield url


@pytest.fixture(scope="module")
def server(served_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`runledger serve` with both workspaces' tokens (RUNLEDGER_TOKENS, comma separated) and
    the projection beside it, for the whole module; each test makes runs of its own."""
    folder = tmp_path_factory.mktemp("server")
    env = {"RUNLEDGER_TOKENS": TOKEN_ENTRIES.replace("\n", ",")}
    with serving(served_database, folder, "--with-projection", env=env) as running:
        yield running


def moment(seconds: float) -> str:
    """A time in the last hour, by the machine's clock (the served ledger's)."""
    return timestamps.to_iso(BASE + timedelta(seconds=seconds))


def create(client: httpx.Client, run_id: str, **fields: Any) -> httpx.Response:
    body = {"runId": run_id, "subjectId": "wf_checkout", "userId": "user_7", "at": moment(0)}
    path = RUNS_B if client.headers.get("authorization") == f"Bearer {TOKEN_B}" else RUNS_A
    return client.post(path, content=payload.dumps(body | fields))


def until_served(client: httpx.Client, path: str, params: dict[str, str]) -> httpx.Response:
    """The read, once it is not 503 (the projection process takes a while to start)."""
    deadline = time.monotonic() + STOP_SECONDS
    while (response := client.get(path, params=params)).status_code == 503:
        assert time.monotonic() < deadline, response.text
    return response


def code(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.status_code, str(response.json()["code"])


def test_serve_refuses_to_start_without_tokens_or_with_a_raw_token(
    run_cli: Cli, tmp_path: Path
) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(f"{TOKEN_A} {WORKSPACE_A}\n")

    results = [
        run_cli("serve", env=environment()),
        run_cli("serve", "--tokens", str(raw), env=environment()),
    ]

    assert [rejected(result) for result in results] == ["invalid"] * 2
    assert "--tokens" in results[0].stderr
    assert "sha256:" in results[1].stderr


@pytest.mark.parametrize("seconds", ["nan", "inf", "1e999", "1e300", "86401", "-1", "0"])
def test_serve_refuses_a_read_your_writes_timeout_that_is_not_more_than_0_and_at_most_a_day(
    run_cli: Cli, seconds: str
) -> None:
    options = ("--dev", "--port", "0", "--read-your-writes-timeout", seconds)

    result = run_cli("serve", *options, env=environment())

    assert rejected(result) == "invalid"
    assert "--read-your-writes-timeout" in result.stderr


def test_dev_mode_serves_without_tokens_and_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'dev.db'}"
    with serving(db, tmp_path, "--dev") as dev, dev.client(None) as anyone:
        created = create(anyone, "run_dev")
        document = anyone.get("/openapi.json").json()

    assert created.status_code == 201
    assert "DEVELOPMENT MODE, NO AUTHENTICATION" in dev.stderr.read_text()
    assert "securitySchemes" not in document["components"]


def test_a_client_that_hangs_up_before_its_body_ends_is_abandoned_without_a_traceback(
    tmp_path: Path,
) -> None:
    db, tokens = f"sqlite:///{tmp_path / 'hang-up.db'}", str(tokens_file(tmp_path))
    head = f"POST {RUNS_A} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN_A}\r\n"

    with serving(db, tmp_path, "--tokens", tokens) as served:
        url = httpx.URL(served.url)
        with socket.create_connection((url.host, url.port), timeout=5) as hang_up:
            hang_up.sendall(f"{head}Content-Length: 100\r\n\r\n{{}}".encode())
        with served.client() as a:
            after = create(a, new_id())

    assert after.status_code == 201
    assert "Exception in ASGI application" not in served.stderr.read_text()


def test_a_run_read_over_http_equals_runledger_show(
    server: Server, served_database: str, tmp_path: Path
) -> None:
    run_id, runledger = new_id(), Cli(cwd=tmp_path, db=served_database)
    body = payload.dumps({"runId": run_id, "subjectId": "wf_checkout", "userId": "user_7"})
    body = body[:-1] + f',"input":{{"total":19.90,"n":[1e5,-0]}},"at":"{moment(0)}"}}'
    with server.client() as a:
        a.post(RUNS_A, content=body)
        a.post(f"{RUNS_A}/{run_id}/start", json={"at": moment(2)})
        a.post(f"{RUNS_A}/{run_id}/complete", json={"at": moment(5), "output": {"ok": True}})
        now, then = a.get(f"{RUNS_A}/{run_id}"), a.get(f"{RUNS_A}/{run_id}?asOf={moment(3)}")

    shown = runledger("show", run_id)
    shown_then = runledger("show", run_id, "--as-of", moment(3))
    assert payload.loads(now.text) == shown.json()
    assert payload.loads(then.text) == shown_then.json()
    assert (now.text + "\n", then.text + "\n") == (shown.stdout, shown_then.stdout)
    assert json.loads(then.text)["status"] == "running"
    assert '"input":{"total":19.90,"n":[1e5,-0]}' in now.text


def test_every_endpoint_answers_over_a_real_server(server: Server) -> None:
    root, children = new_id(), [new_id() for _ in range(3)]
    with server.client() as a:
        statuses = [create(a, root).status_code]
        for route, body in [
            ("start", {}),
            ("wait", {"reason": "approval"}),
            ("resume", {}),
            ("pause", {}),
            ("resume", {}),
            ("link-cf-workflow", {"cfWorkflowId": "cf_1"}),
            ("complete", {"output": {"ok": True}}),
        ]:
            statuses.append(a.post(f"{RUNS_A}/{root}/{route}", json=body).status_code)
        for run_id, route, body in zip(
            children, ("fail", "cancel", "timeout"), ({"error": "boom"}, {}, {}), strict=True
        ):
            statuses.append(create(a, run_id, parentRunId=root).status_code)
            statuses.append(a.post(f"{RUNS_A}/{run_id}/{route}", json=body).status_code)
        batch = a.post("/v1/events:batch", json=[{"command": "start", "runId": children[0]}])
        position = batch.headers["ledger-position"]
        reads = [
            a.get(f"{RUNS_A}/{root}"),
            a.get(f"{RUNS_A}/{root}/history"),
            a.get(RUNS_A, params={"minPosition": position, "parentRunId": root}),
            a.get(f"/v1/workspaces/{WORKSPACE_A}/stats", params={"minPosition": position}),
            a.get(f"{RUNS_A}/{root}/tree", params={"minPosition": position}),
            a.get("/healthz"),
            a.get("/readyz"),
            a.get("/openapi.json"),
        ]

    assert statuses == [201] + [200] * 7 + [201, 200] * 3
    assert batch.json()[0]["error"]["code"] == "illegal_transition"
    assert [response.status_code for response in reads] == [200] * 8
    assert len(reads[1].json()) == 8
    assert len(reads[2].json()["runs"]) == 3
    assert reads[3].json()["countsByStatus"]["completed"] >= 1
    assert len(reads[4].json()["children"]) == 3
    assert reads[6].json()["ready"] is True


def test_every_error_status_over_a_real_server(server: Server) -> None:
    run_id = new_id()
    with server.client() as a, server.client(None) as anonymous:
        create(a, run_id)
        a.post(f"{RUNS_A}/{run_id}/start", json={"at": moment(10)})
        answers = [
            a.post(f"{RUNS_A}/{run_id}/pause", content=b"{"),
            anonymous.get(RUNS_A),
            a.get(RUNS_B),
            a.get(f"{RUNS_A}/{new_id()}"),
            a.get("/v1/nothing"),
            a.delete(f"{RUNS_A}/{run_id}"),
            a.post(f"{RUNS_A}/{run_id}/resume"),
            a.post(f"{RUNS_A}/{run_id}/pause", json={"at": moment(1)}),
            create(a, run_id, userId="someone_else"),
            a.post(f"{RUNS_A}/{run_id}/complete", json={"output": "x" * (1 << 20)}),
        ]

    assert [code(response) for response in answers] == [
        (400, "invalid"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (404, "not_found"),
        (405, "method_not_allowed"),
        (409, "illegal_transition"),
        (409, "out_of_order"),
        (409, "conflict"),
        (413, "too_large"),
    ]


def test_two_tokens_cannot_reach_each_others_workspace(server: Server) -> None:
    theirs = new_id()
    with server.client(TOKEN_A) as a, server.client(TOKEN_B) as b:
        position = create(b, theirs, subjectId="wf_secret").headers["ledger-position"]
        tries = [
            a.get(f"{RUNS_A}/{theirs}"),
            a.get(f"{RUNS_A}/{theirs}/history"),
            a.post(f"{RUNS_A}/{theirs}/cancel"),
            a.get(f"{RUNS_B}/{theirs}"),
            create(a, theirs, subjectId="wf_guess"),
        ]
        batch = a.post("/v1/events:batch", json=[{"command": "cancel", "runId": theirs}])
        listed = a.get(RUNS_A, params={"minPosition": position, "subjectId": "wf_secret"})
        kept = b.get(f"{RUNS_B}/{theirs}")

    assert [response.status_code for response in tries] == [404, 404, 404, 403, 409]
    assert not [r.text for r in [*tries, batch] if "wf_secret" in r.text]
    assert batch.json()[0]["error"]["code"] == "not_found"
    assert listed.json()["runs"] == []
    assert (kept.json()["status"], kept.headers["etag"]) == ("pending", '"1"')


def test_the_projection_can_run_apart_in_its_own_process(database_url: str, tmp_path: Path) -> None:
    tokens = str(tokens_file(tmp_path))
    options = ("--tokens", tokens, "--read-your-writes-timeout", "0.3")
    with serving(database_url, tmp_path, *options) as apart, apart.client() as a:
        position = create(a, "run_apart").headers["ledger-position"]
        behind = a.get(RUNS_A, params={"minPosition": position})
        project = subprocess.Popen(
            [str(RUNLEDGER), "--db", database_url, "project", "--follow"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment(),
        )
        try:
            caught_up = until_served(a, RUNS_A, {"minPosition": position})
            ready = a.get("/readyz").json()
        finally:
            project.send_signal(signal.SIGTERM)
            stopped = project.wait(STOP_SECONDS)

    assert code(behind) == (503, "read_model_behind")
    assert behind.headers["retry-after"] == "1"
    assert [run["id"] for run in caught_up.json()["runs"]] == ["run_apart"]
    assert (ready["projection"], stopped) == ("apart", 0)


def test_sigterm_ends_a_read_waiting_for_the_read_model_with_a_503_and_exits_cleanly(
    database_url: str, tmp_path: Path
) -> None:
    tokens = str(tokens_file(tmp_path))
    options = ("--tokens", tokens, "--read-your-writes-timeout", "600")  # no projection at all

    with ThreadPoolExecutor(1) as reader:
        with serving(database_url, tmp_path, *options) as stopped, stopped.client() as a:
            position = create(a, "run_waited_for").headers["ledger-position"]
            waiting = reader.submit(read_runs, stopped, {"minPosition": position})
            time.sleep(1)  # the read has reached the server, and waits, when SIGTERM comes
        answer = waiting.result(STOP_SECONDS)

    assert code(answer) == (503, "read_model_behind")
    assert answer.headers["retry-after"] == "1"
    assert "Exception in ASGI application" not in stopped.stderr.read_text()


def read_runs(server: Server, params: dict[str, str]) -> httpx.Response:
    with server.client() as client:
        return client.get(RUNS_A, params=params)
