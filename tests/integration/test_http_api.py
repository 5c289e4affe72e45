"""Writes over HTTP, on SQLite and PostgreSQL: create, every transition, the batch, and every
error status as application/problem+json with the contract's code."""

from __future__ import annotations

from typing import Any

import pytest

from domain import payload
from domain.commands import MAX_COMMAND_BYTES
from domain.status import Command
from infrastructure.http.bodies import COMMAND_BODY_LIMIT, MAX_BATCH
from infrastructure.http.writes import ROUTES
from tests.builders import at, command, create
from tests.integration.http_fixtures import (
    WORKSPACE_A,
    Api,
    create_body,
    new_id,
    problem,
    run_path,
    runs_path,
)

TRANSITIONS: dict[str, tuple[tuple[str, ...], dict[str, Any], str]] = {
    "start": ((), {}, "running"),
    "pause": (("start",), {"reason": "lunch"}, "paused"),
    "resume": (("start", "pause"), {}, "running"),
    "wait": (("start",), {"reason": "approval"}, "waiting"),
    "complete": (("start",), {"output": {"total": 19.90}}, "completed"),
    "fail": (("start",), {"error": "tool quota exceeded"}, "failed"),
    "cancel": ((), {"reason": "not needed"}, "cancelled"),
    "timeout": (("start", "wait"), {}, "timed_out"),
    "link-cf-workflow": (("start",), {"cfWorkflowId": "cf_9"}, "running"),
}
"""Each route: the routes that lead to a status it is allowed from, its body, where it goes."""


def created(api: Api, **fields: Any) -> str:
    run_id = new_id()
    response = api.a.post(runs_path(), json=create_body(run_id, at=at(0), **fields))
    assert response.status_code == 201, response.text
    return run_id


def post(api: Api, run_id: str, route: str, body: Any = None, **headers: str) -> Any:
    return api.a.post(f"{run_path(run_id)}/{route}", json=body, headers=headers)


def test_the_routes_are_the_contracts_transitions() -> None:
    assert set(ROUTES.values()) == set(Command) - {Command.CREATE}
    assert set(ROUTES) == set(TRANSITIONS)


def test_a_create_answers_the_view_with_its_location_version_and_position(api: Api) -> None:
    run_id = new_id()

    response = api.a.post(runs_path(), json=create_body(run_id, at=at(0), input={"n": 1}))

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["location"] == run_path(run_id)
    assert response.headers["etag"] == '"1"'
    assert int(response.headers["ledger-position"]) >= 1
    view = response.json()
    assert (view["id"], view["workspaceId"], view["status"]) == (run_id, WORKSPACE_A, "pending")
    assert view["input"] == {"n": 1}


def test_numbers_come_back_exactly_as_written(api: Api) -> None:
    run_id = new_id()
    body = payload.dumps(create_body(run_id, at=at(0)))[:-1] + ',"input":[1.10,1e5,-0,1e400]}'

    response = api.a.post(runs_path(), content=body)

    assert '"input":[1.10,1e5,-0,1e400]' in response.text


@pytest.mark.parametrize("route", list(TRANSITIONS))
def test_each_transition_moves_the_run(api: Api, route: str) -> None:
    before, body, status = TRANSITIONS[route]
    run_id = created(api)
    for second, step in enumerate(before, start=1):
        assert post(api, run_id, step, {"at": at(second)}).status_code == 200

    response = post(api, run_id, route, {**body, "at": at(10), "actor": "worker_3"})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == status
    assert response.headers["etag"] == f'"{len(before) + 2}"'
    assert api.ledger.history(run_id)[-1].actor == "worker_3"


def test_a_transition_takes_an_empty_body(api: Api) -> None:
    run_id = created(api)

    response = api.a.post(f"{run_path(run_id)}/start")

    assert response.json()["status"] == "running"


def test_the_idempotency_key_header_makes_a_repeat_append_nothing(api: Api) -> None:
    run_id = created(api)
    first = post(api, run_id, "start", {"at": at(1)}, **{"Idempotency-Key": "k-1"})

    again = post(api, run_id, "start", {"at": at(2)}, **{"Idempotency-Key": "k-1"})

    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(api.ledger.history(run_id)) == 2


def test_a_keyed_create_without_a_run_id_makes_one_run(api: Api) -> None:
    key = new_id("key")
    body = create_body(None, at=at(0))

    first = api.a.post(runs_path(), json=body, headers={"Idempotency-Key": key})
    again = api.a.post(runs_path(), json=body, headers={"Idempotency-Key": key})

    assert first.json()["id"] == again.json()["id"]
    assert len(api.ledger.history(first.json()["id"])) == 1


def test_the_batch_answers_each_command_in_order_as_apply_does(api: Api) -> None:
    run_id = new_id()
    commands = [
        create(run_id, workspaceId=WORKSPACE_A, at=at(0)),
        command("start", run_id, at=at(1)),
        command("resume", run_id, at=at(2)),
        command("complete", run_id, at=at(3), output={"ok": True}),
        "not an object",
    ]

    response = api.a.post("/v1/events:batch", json=commands)

    answers = response.json()
    assert response.status_code == 200
    assert int(response.headers["ledger-position"]) >= 3
    assert [answer["ok"] for answer in answers] == [True, True, False, True, False]
    assert answers[2]["error"]["code"] == "illegal_transition"
    assert answers[3]["run"]["status"] == "completed"
    assert answers[4]["error"]["code"] == "invalid"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"runId":', "invalid"),
        ("[]", "invalid"),
        ('{"command":"start"}', "invalid"),
        ('{"runId":"run_x"}', "invalid"),
        ('{"at":"2026-11-24T05:00:00"}', "invalid"),
        ('{"at":"2126-11-24T05:00:00Z"}', "invalid"),
        ('{"reason":"\\u0000"}', "invalid"),
        ('{"unknown":1}', "invalid"),
        (b'{"reason":"\xff"}', "invalid"),
    ],
)
def test_a_malformed_transition_is_400_invalid(api: Api, body: str | bytes, expected: str) -> None:
    run_id = created(api)

    response = api.a.post(f"{run_path(run_id)}/start", content=body)

    assert problem(response, 400) == expected
    assert len(api.ledger.history(run_id)) == 1


def test_fail_without_an_error_and_link_without_an_id_are_invalid(api: Api) -> None:
    run_id = created(api)

    codes = [problem(post(api, run_id, route), 400) for route in ("fail", "link-cf-workflow")]

    assert codes == ["invalid", "invalid"]


def test_a_create_naming_another_workspace_is_invalid(api: Api) -> None:
    body = create_body(new_id(), workspaceId="ws_b", at=at(0))

    assert problem(api.a.post(runs_path(), json=body), 400) == "invalid"


def test_differing_idempotency_keys_in_header_and_body_are_invalid(api: Api) -> None:
    run_id = created(api)

    response = post(api, run_id, "start", {"idempotencyKey": "k-1"}, **{"Idempotency-Key": "k-2"})

    assert problem(response, 400) == "invalid"


def test_a_bad_query_parameter_is_400_never_422(api: Api) -> None:
    response = api.a.get(runs_path(), params={"limit": "many"})

    assert problem(response, 400) == "invalid"


def test_a_transition_of_no_run_is_404_not_found(api: Api) -> None:
    assert problem(post(api, new_id(), "start"), 404) == "not_found"


@pytest.mark.parametrize(
    ("steps", "route", "body", "expected"),
    [
        ((), "complete", {}, "illegal_transition"),
        (("start",), "pause", {"at": at(-60)}, "out_of_order"),
        (("start",), "link-cf-workflow", {"cfWorkflowId": "cf_2"}, "conflict"),
    ],
)
def test_a_rejected_transition_is_409_with_its_code(
    api: Api, steps: tuple[str, ...], route: str, body: dict[str, Any], expected: str
) -> None:
    run_id = created(api, cfWorkflowId="cf_1")
    for step in steps:
        post(api, run_id, step, {"at": at(1)})

    response = post(api, run_id, route, body)

    assert problem(response, 409) == expected
    assert len(api.ledger.history(run_id)) == 1 + len(steps)


def test_a_different_create_for_an_existing_id_is_409_conflict(api: Api) -> None:
    run_id = created(api)

    response = api.a.post(runs_path(), json=create_body(run_id, subjectId="wf_other", at=at(0)))

    assert problem(response, 409) == "conflict"


def test_a_command_over_1_mib_is_413_too_large(api: Api) -> None:
    run_id = created(api)

    response = post(api, run_id, "complete", {"output": "x" * MAX_COMMAND_BYTES})

    assert problem(response, 413) == "too_large"
    assert len(api.ledger.history(run_id)) == 1


def test_a_body_over_its_limit_is_413_unread(api: Api) -> None:
    body = b"[" + b" " * COMMAND_BODY_LIMIT + b"]"

    response = api.a.post(runs_path(), content=body)

    assert problem(response, 413) == "too_large"


def test_a_batch_of_more_than_1000_commands_is_413(api: Api) -> None:
    commands = [command("start", new_id())] * (MAX_BATCH + 1)

    assert problem(api.a.post("/v1/events:batch", json=commands), 413) == "too_large"


def test_a_batch_that_is_not_an_array_is_400(api: Api) -> None:
    assert problem(api.a.post("/v1/events:batch", json={"command": "start"}), 400) == "invalid"


def test_an_unknown_route_is_404_and_a_wrong_method_405(api: Api) -> None:
    assert problem(api.a.get("/v2/anything"), 404) == "not_found"
    wrong = api.a.delete(run_path(new_id()))
    assert problem(wrong, 405) == "method_not_allowed"
    assert wrong.headers["allow"] == "GET"
