"""Reads over HTTP, on SQLite and PostgreSQL: one run (now, as of, as known at; ETag and 304),
its history, the list, stats and tree with read-your-writes, and the operator's endpoints."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from eventsourcing.persistence import WaitInterruptedError

from domain import payload, timestamps
from infrastructure import readmodel
from infrastructure.application import Ledger
from infrastructure.http.projection import ProjectionBeside
from infrastructure.http.service import Settings
from projections import history
from projections.fold import to_view
from tests.builders import at, create
from tests.integration.http_fixtures import (
    TOKENS,
    WORKSPACE_A,
    Api,
    api_on,
    create_body,
    new_id,
    problem,
    run_path,
    runs_path,
)


def write(api: Api, run_id: str, route: str, second: float, **body: Any) -> httpx.Response:
    response = api.a.post(f"{run_path(run_id)}/{route}", json={"at": at(second), **body})
    assert response.status_code == 200, response.text
    return response


def created(api: Api, **fields: Any) -> httpx.Response:
    response = api.a.post(runs_path(), json=create_body(new_id(), at=at(0), **fields))
    assert response.status_code == 201, response.text
    return response


def test_a_run_reads_as_its_write_answered_with_its_version_as_etag(api: Api) -> None:
    run_id = created(api).json()["id"]
    written = write(api, run_id, "start", 2)

    read = api.a.get(run_path(run_id))

    assert read.status_code == 200
    assert read.content == written.content
    assert read.headers["etag"] == '"2"'
    assert read.content.decode() == to_view(api.ledger.state(run_id)).to_json()


@pytest.mark.parametrize("tag", ['"1"', 'W/"1"', '"7", "1"', "*"])
def test_if_none_match_with_the_version_answers_304_without_a_body(api: Api, tag: str) -> None:
    run_id = created(api).json()["id"]

    response = api.a.get(run_path(run_id), headers={"If-None-Match": tag})

    assert (response.status_code, response.content) == (304, b"")
    assert response.headers["etag"] == '"1"'


def test_if_none_match_with_an_older_version_answers_the_run(api: Api) -> None:
    run_id = created(api).json()["id"]
    write(api, run_id, "start", 1)

    response = api.a.get(run_path(run_id), headers={"If-None-Match": '"1"'})

    assert response.status_code == 200
    assert response.json()["status"] == "running"


def test_as_of_reads_the_run_as_it_was_by_the_sources_clock(api: Api) -> None:
    run_id = created(api).json()["id"]
    write(api, run_id, "start", 5)
    write(api, run_id, "complete", 10)

    response = api.a.get(run_path(run_id), params={"asOf": at(7)})

    assert response.json()["status"] == "running"
    assert response.headers["etag"] == '"2"'


def test_as_known_at_reads_the_run_as_the_ledger_knew_it(api: Api) -> None:
    run_id = created(api).json()["id"]
    known = timestamps.to_iso(api.clock.now)
    api.clock.advance(60)
    write(api, run_id, "start", 5)

    response = api.a.get(run_path(run_id), params={"asKnownAt": known})

    assert response.json()["status"] == "pending"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"asOf": at(-1)}, 404, "not_found"),
        ({"asOf": "yesterday"}, 400, "invalid"),
        ({"asOf": "2026-11-24T05:00:00"}, 400, "invalid"),
        ({"asOf": at(1), "asKnownAt": at(1)}, 400, "invalid"),
    ],
)
def test_a_bad_moment_is_rejected(api: Api, params: dict[str, str], status: int, code: str) -> None:
    run_id = created(api).json()["id"]

    assert problem(api.a.get(run_path(run_id), params=params), status) == code


def test_a_malformed_run_id_is_invalid_and_an_unknown_one_not_found(api: Api) -> None:
    assert problem(api.a.get(run_path("-bad")), 400) == "invalid"
    assert problem(api.a.get(run_path(new_id())), 404) == "not_found"
    assert problem(api.a.get(run_path(new_id()) + "/history"), 404) == "not_found"


def test_the_history_lists_the_events_as_runledger_history_prints_them(api: Api) -> None:
    run_id = new_id()
    body = payload.dumps(create_body(run_id, at=at(0)))[:-1] + ',"input":{"total":19.90}}'
    api.a.post(runs_path(), content=body)
    write(api, run_id, "start", 1, actor="worker_3")
    write(api, run_id, "complete", 2, output={"order": "ord_981"})

    response = api.a.get(run_path(run_id) + "/history")

    expected = list(history.entries(api.ledger.history(run_id)))
    assert response.json() == json.loads(payload.dumps(expected))
    assert [entry["version"] for entry in response.json()] == [1, 2, 3]
    assert '"total":19.90' in response.text


def test_the_list_reads_its_own_writes_with_min_position(api: Api) -> None:
    subject = new_id("wf")
    ids = [created(api, subjectId=subject).json()["id"] for _ in range(3)]
    position = write(api, ids[0], "start", 1).headers["ledger-position"]

    response = api.a.get(
        runs_path(), params={"subjectId": subject, "status": "running", "minPosition": position}
    )

    assert [run["id"] for run in response.json()["runs"]] == [ids[0]]


def test_the_list_walks_its_pages_with_the_cursor(api: Api) -> None:
    subject = new_id("wf")
    answers = [created(api, subjectId=subject) for _ in range(3)]
    ids = {answer.json()["id"] for answer in answers}
    position = answers[-1].headers["ledger-position"]
    params = {"subjectId": subject, "limit": "2", "minPosition": position}

    first = api.a.get(runs_path(), params=params).json()
    second = api.a.get(runs_path(), params=params | {"cursor": first["nextCursor"]}).json()

    assert {run["id"] for run in first["runs"] + second["runs"]} == ids
    assert second["nextCursor"] is None


def test_a_min_position_past_the_latest_event_is_invalid(api: Api) -> None:
    response = api.a.get(runs_path(), params={"minPosition": 10**9})

    assert problem(response, 400) == "invalid"


@pytest.mark.parametrize(
    ("path", "params", "advice"),
    [
        ("/runs", {"cursor": "bm90IGEgY3Vyc29y"}, "start again without a cursor"),
        (
            "/stats",
            {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            "or set bucket to day",
        ),
    ],
    ids=["cursor", "bucket"],
)
def test_a_rejected_read_advises_the_query_parameter_not_a_command_line_option(
    api: Api, path: str, params: dict[str, str], advice: str
) -> None:
    response = api.a.get(f"/v1/workspaces/{WORKSPACE_A}{path}", params=params)

    assert problem(response, 400) == "invalid"
    assert advice in response.json()["detail"]
    assert "--" not in response.json()["detail"]


def test_stats_count_the_workspaces_runs_in_the_window(api: Api) -> None:
    subject = new_id("wf")
    run_id = created(api, subjectId=subject).json()["id"]
    write(api, run_id, "start", 1)
    position = write(api, run_id, "complete", 3).headers["ledger-position"]
    window = {"from": at(-3600), "to": at(3600), "subjectId": subject, "bucket": "day"}

    response = api.a.get(
        f"/v1/workspaces/{WORKSPACE_A}/stats", params=window | {"minPosition": position}
    )

    stats = response.json()

    assert response.status_code == 200
    assert stats["countsByStatus"]["completed"] == 1
    assert stats["durationMs"]["p50"] == 2000
    assert stats["from"] == at(-3600)


def test_the_tree_nests_a_runs_children(api: Api) -> None:
    parent = created(api).json()["id"]
    child = created(api, parentRunId=parent)
    position = child.headers["ledger-position"]

    tree = api.a.get(run_path(parent) + "/tree", params={"minPosition": position}).json()

    assert tree["run"]["id"] == parent
    assert [node["run"]["id"] for node in tree["children"]] == [child.json()["id"]]


def test_a_read_the_read_model_cannot_serve_in_time_is_503(fresh_database: str) -> None:
    settings = Settings(TOKENS, read_your_writes_timeout=0.2)  # and no projection
    with api_on(fresh_database, settings) as apart:
        position = created(apart).headers["ledger-position"]

        response = apart.a.get(runs_path(), params={"minPosition": position})

    assert problem(response, 503) == "read_model_behind"
    assert response.headers["retry-after"] == "1"


def test_a_wait_on_the_projection_beside_ends_once_the_service_stops(fresh_database: str) -> None:
    stopping = threading.Event()
    with Ledger(fresh_database) as ledger:
        ledger.submit(create(new_id()))
        beside = ProjectionBeside(ledger, readmodel.open_view(ledger))  # not started: behind

        stopping.set()
        with pytest.raises(WaitInterruptedError):
            beside.wait_for(1, timeout=10, interrupt=stopping)


def test_readyz_reports_the_lag_and_healthz_answers_without_a_token(api: Api) -> None:
    ready = api.anonymous.get("/readyz")

    assert api.anonymous.get("/healthz").json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["projection"] == "beside"
    assert set(ready.json()["lag"]) >= {"position", "head", "behindEvents", "behindSeconds"}


def test_the_document_asks_for_a_bearer_token_and_never_answers_422(api: Api) -> None:
    document = api.anonymous.get("/openapi.json").json()

    operations = [op for path in document["paths"].values() for op in path.values()]
    assert all("422" not in op["responses"] for op in operations)
    assert document["paths"]["/v1/workspaces/{workspaceId}/runs"]["get"]["security"] == [
        {"bearer": []}
    ]
    assert "security" not in document["paths"]["/healthz"]["get"]
    assert list(document["components"]["schemas"]["Stats"]["properties"])[1] == "from"


def test_timestamps_in_the_window_defaults_follow_the_ledgers_clock(api: Api) -> None:
    response = api.a.get(f"/v1/workspaces/{WORKSPACE_A}/stats")

    assert response.json()["to"] == timestamps.to_iso(api.clock.now)
    assert response.json()["from"] == timestamps.to_iso(api.clock.now - timedelta(hours=24))
