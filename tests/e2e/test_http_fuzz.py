"""Schemathesis against `runledger serve`'s own /openapi.json, on SQLite and PostgreSQL: for
every operation, requests made from the document (fitting it, and not) never get a 5xx, and
every response is what the document says (status, content type, headers, body schema);
an operation that asks for a token refuses a request without one.

Most requests name workspace A (with A's token) and one of a few runs seeded in every status,
in workspace B, or in none; the rest of each request is Schemathesis's. The number of
examples is bounded (EXAMPLES an operation and mode, more in CI), and so is every request's
time.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import BACKENDS
from tests.e2e.served import TOKEN_A, TOKEN_B, TOKEN_ENTRIES, WORKSPACE_A, WORKSPACE_B, serving
from tests.integration.http_fixtures import database

EXAMPLES = 60 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 25
REQUEST_SECONDS = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
ROUTES_TO = {"pending": (), "running": ("start",), "waiting": ("start", "wait")}
ROUTES_TO |= {"paused": ("start", "pause"), "completed": ("start", "complete")}
ROUTES_TO |= {"failed": ("fail",)}
RUN_IDS = [f"run_fuzz_{status}" for status in ROUTES_TO] + ["run_fuzz_of_b", "run_fuzz_none"]


@pytest.fixture(scope="module", params=BACKENDS)
def fuzzed_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The service, with both tokens and the projection beside it, and its seeded runs."""
    server_url = None
    if request.param == "postgres":
        server_url = str(request.getfixturevalue("postgres_server_url"))
    folder = tmp_path_factory.mktemp("fuzz")
    env = {"RUNLEDGER_TOKENS": TOKEN_ENTRIES}
    with (
        database(request.param, folder, server_url) as db,
        serving(db, folder, "--with-projection", env=env) as server,
    ):
        _seed(server.url)
        yield server.url


@pytest.fixture(scope="module")
def api_schema(fuzzed_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed_url}/openapi.json", timeout=REQUEST_SECONDS)


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_the_service_answers_as_its_document_says(api_schema: Any, mode: GenerationMode) -> None:
    # Not `@schema.parametrize()` on a fixture's schema: that loader fails on pytest 9
    # (schemathesis 4.32 reads a node attribute that pytest 9 removed).
    for result in api_schema.get_all_operations():
        operation = result.ok()
        inputs = [operation.path_parameters, operation.headers, operation.query, operation.body]
        if mode is GenerationMode.NEGATIVE and not any(len(part) for part in inputs):
            continue  # /healthz, /readyz: nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case: Any) -> None:
            if case.path_parameters is not None:
                if "workspaceId" in case.path_parameters:
                    case.path_parameters["workspaceId"] = WORKSPACE_A
                if "runId" in case.path_parameters:
                    case.path_parameters["runId"] = _run_id(str(case.path_parameters["runId"]))
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN_A}"},
                checks=CHECKS,
                timeout=REQUEST_SECONDS,
            )

        answers_as_documented()


def _run_id(generated: str) -> str:
    """One of the seeded runs, or the generated id itself, chosen by the id (so that a
    failing example replays the same)."""
    choices = [*RUN_IDS, generated]
    return choices[zlib.crc32(generated.encode()) % len(choices)]


def _seed(url: str) -> None:
    with (
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_A}"}) as a,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_B}"}) as b,
    ):
        body = {"subjectId": "wf_fuzz", "userId": "user_fuzz"}
        theirs = b.post(f"/v1/workspaces/{WORKSPACE_B}/runs", json=body | {"runId": RUN_IDS[-2]})
        assert theirs.status_code == 201, theirs.text
        for status, routes in ROUTES_TO.items():
            run = f"/v1/workspaces/{WORKSPACE_A}/runs"
            assert a.post(run, json=body | {"runId": f"run_fuzz_{status}"}).status_code == 201
            for route in routes:
                fields = {"error": "boom"} if route == "fail" else {}
                answer = a.post(f"{run}/run_fuzz_{status}/{route}", json=fields)
                assert answer.status_code == 200, answer.text
