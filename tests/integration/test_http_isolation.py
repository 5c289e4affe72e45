"""Workspaces over HTTP, on SQLite and PostgreSQL: a token of workspace A can neither read nor
write workspace B, on any route or in a batch; and a batch kept inside its workspace answers
exactly as `apply` does."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain import commands
from domain.errors import RunLedgerError
from infrastructure.application import Ledger
from infrastructure.http import scope
from projections.fold import RunState, to_view
from tests.builders import FakeClock, at, command, create
from tests.integration.http_fixtures import (
    WORKSPACE_A,
    WORKSPACE_B,
    Api,
    create_body,
    new_id,
    problem,
    run_path,
    runs_path,
)


def run_of_b(api: Api, **fields: Any) -> httpx.Response:
    response = api.b.post(runs_path(WORKSPACE_B), json=create_body(new_id(), at=at(0), **fields))
    assert response.status_code == 201, response.text
    return response


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer", f"bearer {'x' * 500}"],
)
def test_a_request_without_a_known_token_is_401(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = api.anonymous.get(runs_path(), headers=headers)

    assert problem(response, 401) == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_token_on_another_workspaces_path_is_403_for_every_route(api: Api) -> None:
    run_id = run_of_b(api).json()["id"]
    paths = [run_path(run_id, WORKSPACE_B) + suffix for suffix in ("", "/history", "/tree")]
    reads = [
        api.a.get(path) for path in [*paths, runs_path(WORKSPACE_B), "/v1/workspaces/ws_b/stats"]
    ]
    writes = [
        api.a.post(runs_path(WORKSPACE_B), json=create_body(new_id())),
        api.a.post(run_path(run_id, WORKSPACE_B) + "/cancel"),
    ]

    assert {problem(response, 403) for response in reads + writes} == {"forbidden"}
    assert api.ledger.state(run_id).version == 1


def test_a_run_of_another_workspace_is_404_under_ones_own(api: Api) -> None:
    run_id = run_of_b(api, subjectId="wf_secret").json()["id"]
    own = run_path(run_id, WORKSPACE_A)

    answers = [api.a.get(own + suffix) for suffix in ("", "/history", "/tree")]
    answers += [api.a.get(own, params={"asOf": at(5)})]
    answers += [api.a.post(f"{own}/start"), api.a.post(f"{own}/fail", json={"error": "x"})]

    assert {problem(response, 404) for response in answers} == {"not_found"}
    assert not [response.text for response in answers if "wf_secret" in response.text]
    assert api.ledger.state(run_id).version == 1


def test_a_create_of_an_id_taken_in_another_workspace_tells_nothing_of_that_run(api: Api) -> None:
    run_id = run_of_b(api, subjectId="wf_secret", input={"card": "4111"}).json()["id"]

    response = api.a.post(runs_path(), json=create_body(run_id, subjectId="wf_guess", at=at(0)))

    assert problem(response, 409) == "conflict"
    assert "subjectId" not in response.text
    assert "input" not in response.text


def test_the_list_and_stats_of_a_workspace_hold_only_its_runs(api: Api) -> None:
    subject = new_id("wf")
    position = run_of_b(api, subjectId=subject).headers["ledger-position"]
    query = {"subjectId": subject, "minPosition": position}

    runs = api.a.get(runs_path(), params=query).json()
    stats = api.a.get(f"/v1/workspaces/{WORKSPACE_A}/stats", params=query).json()

    assert runs["runs"] == []
    assert sum(stats["countsByStatus"].values()) == 0
    assert len(api.b.get(runs_path(WORKSPACE_B), params=query).json()["runs"]) == 1


def test_a_batch_acts_only_in_its_tokens_workspace(api: Api) -> None:
    theirs = run_of_b(api, subjectId="wf_secret").json()["id"]
    ours = new_id()
    batch = [
        create(new_id(), workspaceId=WORKSPACE_B),
        command("cancel", theirs),
        create(theirs, workspaceId=WORKSPACE_A, subjectId="wf_guess"),
        create(ours, workspaceId=WORKSPACE_A, at=at(0)),
        command("start", ours, at=at(1)),
    ]

    answers = api.a.post("/v1/events:batch", json=batch).json()

    codes = [answer["error"]["code"] if not answer["ok"] else "ok" for answer in answers]
    assert codes == ["invalid", "not_found", "conflict", "ok", "ok"]
    assert "subjectId" not in answers[2]["error"]["message"]
    assert answers[4]["run"]["status"] == "running"
    assert api.ledger.state(theirs).version == 1


# The batch's waves change nothing of `apply`'s answers --------------------------------------

NAMES = ("start", "pause", "resume", "wait", "complete", "fail", "cancel", "timeOut")
RUNS = ("r1", "r2", "r3")


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Commands of a few runs of workspace A, creates among them (some with a parent, some
    invalid, some again), in any order."""
    items = []
    for second in range(draw(st.integers(1, 14))):
        run = draw(st.sampled_from(RUNS))
        if draw(st.integers(0, 3)) == 0:
            parent = draw(st.sampled_from((None, *RUNS)))
            user = draw(st.sampled_from(("user_1", "user_1", "-not-an-id")))
            fields = {"parentRunId": parent, "userId": user, "at": at(second)}
            items.append(create(run, workspaceId=WORKSPACE_A, **fields))
        else:
            items.append(command(draw(st.sampled_from(NAMES)), run, at=at(second)))
    return items


def answers_of(outcomes: list[RunState | RunLedgerError]) -> list[Any]:
    return [
        outcome.as_json() if isinstance(outcome, RunLedgerError) else to_view(outcome).to_json()
        for outcome in outcomes
    ]


def parsed(items: list[dict[str, Any]], prefix: str) -> list[scope.Item]:
    renamed: list[scope.Item] = []
    for item in items:
        fields = {
            k: f"{prefix}{v}" if k in ("runId", "parentRunId") else v for k, v in item.items()
        }
        try:
            renamed.append(commands.parse(fields))
        except RunLedgerError as error:
            renamed.append(error)
    return renamed


A_PARENT_MADE_LATE = [
    create("r1", workspaceId=WORKSPACE_A, parentRunId="r3", at=at(0)),  # no r3: invalid
    command("start", "r1", at=at(1)),  # not_found: r1 waits for the next wave
    create("r1", workspaceId=WORKSPACE_A, at=at(2)),  # made now, in the second wave
    create("r2", workspaceId=WORKSPACE_A, parentRunId="r1", at=at(3)),  # so this waits too
    command("start", "r2", at=at(4)),
]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=batches())
@example(items=A_PARENT_MADE_LATE)
def test_a_batch_kept_in_its_workspace_answers_as_apply_does(
    ledger: Ledger, clock: FakeClock, items: list[dict[str, Any]]
) -> None:
    prefix = f"b{uuid.uuid4().hex[:10]}_"
    commands_in_order = parsed(items, prefix)

    with Ledger("sqlite:///:memory:", clock=clock) as reference:  # as `apply` does it
        valid = [c for c in commands_in_order if not isinstance(c, RunLedgerError)]
        outcomes = iter(reference.execute_many(valid))
        expected = [
            c if isinstance(c, RunLedgerError) else next(outcomes) for c in commands_in_order
        ]
    scoped = scope.execute_batch(ledger, commands_in_order, WORKSPACE_A)

    assert answers_of(scoped) == answers_of(expected)
