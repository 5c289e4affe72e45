"""Reads: one run (now, as of a moment, or as known at a moment), its history, and the
dashboard's list, stats and tree.

One run and its history come from its events, as `runledger show` and `history` read them:
always current. The list, stats and tree come from the `workflow_runs` read model through the
queries of `runledger runs|stats|tree`; `minPosition` (a write's `Ledger-Position`) makes them
wait, a bounded while, until the read model has applied that write.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from domain import payload, timestamps
from domain.errors import InvalidCommand, RunNotFound
from domain.events import RunCreated, RunEvent
from domain.status import RunStatus, TriggeredBy
from infrastructure.http.openapi import ETAG, errors
from infrastructure.http.service import RunIdPath, Service, ServiceDep, WorkspaceDep, run_id_checked
from infrastructure.http.shapes import HistoryEntry
from projections import history
from projections.fold import fold, to_view, until
from projections.queries import (
    MAX_LIMIT,
    Bucket,
    RunNode,
    RunsPage,
    RunsQuery,
    Stats,
    StatsQuery,
    TreeQuery,
)
from projections.view import WorkflowRun

router = APIRouter(tags=["reads"])

MinPosition = Annotated[
    int | None,
    Query(
        alias="minPosition",
        ge=0,
        description="Wait (up to 5 s by default, then 503 read_model_behind) until the read "
        "model has applied this position: the Ledger-Position header of a write.",
    ),
]


def moment(alias: str, description: str) -> Any:
    """A query parameter holding an ISO-8601 timestamp with an offset."""
    return Query(alias=alias, description=description, json_schema_extra={"format": "date-time"})


_READ_MODEL_ERRORS = ("invalid", "forbidden", "read_model_behind")


@router.get(
    "/v1/workspaces/{workspaceId}/runs/{runId}",
    operation_id="getRun",
    summary="A run's view: the seed's WorkflowRun, exactly as `runledger show` prints it",
    response_model=WorkflowRun,
    responses={
        200: {"description": "The run's view", "headers": ETAG},
        304: {"description": "Not modified: If-None-Match holds the run's version"},
        **errors("invalid", "forbidden", "not_found"),
    },
)
def get_run(
    service: ServiceDep,
    workspace: WorkspaceDep,
    run_id: RunIdPath,
    as_of: Annotated[
        str | None, moment("asOf", "The run as it was then, by the source's clock (`at`).")
    ] = None,
    as_known_at: Annotated[
        str | None, moment("asKnownAt", "The run as the ledger knew it then, by its own clock.")
    ] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    run_id = run_id_checked(run_id)
    if as_of is not None and as_known_at is not None:
        raise InvalidCommand("give asOf or asKnownAt, not both")
    if as_of is not None:
        moment = timestamps.parse(as_of, field="asOf")
        events = until(run_id, _own_events(service, workspace, run_id), moment)
        state = fold(events)
    elif as_known_at is not None:
        moment = timestamps.parse(as_known_at, field="asKnownAt")
        events = until(run_id, _own_events(service, workspace, run_id), moment, known=True)
        state = fold(events)
    else:
        state = service.ledger.state(run_id)
        if state.workspace_id != workspace:
            raise RunNotFound(run_id)
    etag = f'"{state.version}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None and _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(to_view(state).to_json(), media_type="application/json", headers=headers)


@router.get(
    "/v1/workspaces/{workspaceId}/runs/{runId}/history",
    operation_id="getRunHistory",
    summary="A run's events, oldest first, as `runledger history` prints them",
    response_model=list[HistoryEntry],
    responses={200: {"description": "The events"}, **errors("invalid", "forbidden", "not_found")},
)
def get_history(service: ServiceDep, workspace: WorkspaceDep, run_id: RunIdPath) -> Response:
    events = _own_events(service, workspace, run_id_checked(run_id))
    return _json(list(history.entries(events)))


@router.get(
    "/v1/workspaces/{workspaceId}/runs",
    operation_id="listRuns",
    summary="The workspace's runs, newest first, a page at a time (`runledger runs`)",
    response_model=RunsPage,
    responses={200: {"description": "A page"}, **errors(*_READ_MODEL_ERRORS)},
)
def list_runs(
    service: ServiceDep,
    workspace: WorkspaceDep,
    status: Annotated[list[RunStatus], Query(description="Repeat for several.")] = [],  # noqa: B006
    triggered_by: Annotated[TriggeredBy | None, Query(alias="triggeredBy")] = None,
    subject_id: Annotated[str | None, Query(alias="subjectId")] = None,
    parent_run_id: Annotated[str | None, Query(alias="parentRunId")] = None,
    created_from: Annotated[str | None, moment("createdFrom", "At or after.")] = None,
    created_to: Annotated[str | None, moment("createdTo", "Before.")] = None,
    limit: Annotated[
        int | None,
        Query(description="50 by default.", json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT}),
    ] = None,
    cursor: Annotated[str | None, Query(description="The nextCursor of the page before.")] = None,
    min_position: MinPosition = None,
) -> Response:
    query = RunsQuery.parse(
        workspace_id=workspace,
        statuses=[s.value for s in status],
        triggered_by=None if triggered_by is None else triggered_by.value,
        subject_id=subject_id,
        parent_run_id=parent_run_id,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        cursor=cursor,
    )
    service.read_your_writes(min_position)
    return _json(service.queries().runs(query).to_json_dict())


@router.get(
    "/v1/workspaces/{workspaceId}/stats",
    operation_id="getStats",
    summary="Status counts, durations, subjects and buckets over [from, to) (`runledger stats`)",
    response_model=Stats,
    responses={200: {"description": "The stats"}, **errors(*_READ_MODEL_ERRORS)},
)
def get_stats(
    service: ServiceDep,
    workspace: WorkspaceDep,
    start: Annotated[str | None, moment("from", "24 hours before `to` by default.")] = None,
    end: Annotated[str | None, moment("to", "Now, by the ledger's clock, by default.")] = None,
    subject_id: Annotated[str | None, Query(alias="subjectId")] = None,
    bucket: Annotated[Bucket | None, Query(description="hour by default.")] = None,
    min_position: MinPosition = None,
) -> Response:
    query = StatsQuery.parse(
        workspace_id=workspace,
        now=service.ledger.now(),
        start=start,
        end=end,
        subject_id=subject_id,
        bucket=None if bucket is None else bucket.value,
    )
    service.read_your_writes(min_position)
    return _json(service.queries().stats(query).to_json_dict())


@router.get(
    "/v1/workspaces/{workspaceId}/runs/{runId}/tree",
    operation_id="getRunTree",
    summary="A run and its descendants, nested (`runledger tree`)",
    response_model=RunNode,
    responses={
        200: {"description": "The tree"},
        **errors("not_found", "too_large", *_READ_MODEL_ERRORS),
    },
)
def get_tree(
    service: ServiceDep,
    workspace: WorkspaceDep,
    run_id: RunIdPath,
    min_position: MinPosition = None,
) -> Response:
    query = TreeQuery(run_id_checked(run_id), workspace_id=workspace)
    service.read_your_writes(min_position)
    return _json(service.queries().tree(query).to_json_dict())


def _own_events(service: Service, workspace: str, run_id: str) -> list[RunEvent]:
    """The run's events; not_found for a run of another workspace, as for no run at all."""
    events = service.ledger.history(run_id)
    created = events[0]
    if not isinstance(created, RunCreated) or created.workspace_id != workspace:
        raise RunNotFound(run_id)
    return events


def _matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match, compared weakly (RFC 9110 13.1.2)."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def _json(value: Any) -> Response:
    return Response(payload.dumps(value), media_type="application/json")
