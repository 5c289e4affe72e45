"""Writes: create, the nine transitions, and the batch; each answered once its event is durable.

A route reads its body on the event loop, then parses and executes in the threadpool, where
concurrent callers reach the ledger's group commit (many requests, one transaction). The
path names the workspace, the run and the command; the body holds the rest of the command's
fields, as `apply` spells them. `Idempotency-Key` is the command's `idempotencyKey`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from domain import commands
from domain.errors import InvalidCommand, RunLedgerError
from domain.status import Command
from infrastructure.batch import answer
from infrastructure.http import bodies, scope
from infrastructure.http.openapi import BODY_OF, ETAG, POSITION, errors, header, request_body
from infrastructure.http.service import AccessDep, RunIdPath, Service, ServiceDep, WorkspaceDep
from infrastructure.http.shapes import Answer
from projections.fold import RunState, view_text
from projections.view import WorkflowRun

router = APIRouter(tags=["writes"])

ROUTES: dict[str, Command] = {
    "start": Command.START,
    "pause": Command.PAUSE,
    "resume": Command.RESUME,
    "wait": Command.WAIT,
    "complete": Command.COMPLETE,
    "fail": Command.FAIL,
    "cancel": Command.CANCEL,
    "timeout": Command.TIME_OUT,
    "link-cf-workflow": Command.LINK_CF_WORKFLOW,
}
"""The last segment of a transition's path, and its command."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="The command's idempotencyKey: the same command sent again with it "
        "appends nothing and answers the run as it is.",
    ),
]
_WRITE_ERRORS = (
    *("invalid", "forbidden", "not_found"),
    *("illegal_transition", "conflict", "out_of_order", "too_large"),
)


@router.post(
    "/v1/workspaces/{workspaceId}/runs",
    status_code=201,
    operation_id="createRun",
    summary="Create a run (pending)",
    response_model=WorkflowRun,
    responses={
        201: {
            "description": "The run's view (also when the same create was sent before)",
            "headers": {**POSITION, **ETAG, "Location": header("The run's URL")},
        },
        **errors("invalid", "forbidden", "conflict", "too_large"),
    },
    openapi_extra=request_body("CreateRunBody"),
)
async def create_run(
    request: Request, service: ServiceDep, workspace: WorkspaceDep, key: IdempotencyKey = None
) -> Response:
    body = await bodies.read(request, bodies.COMMAND_BODY_LIMIT)
    return await run_in_threadpool(_create, service, workspace, body, key)


def _create(service: Service, workspace: str, body: bytes, key: str | None) -> Response:
    fields = _fields(body, optional=False, key=key)
    fields.setdefault("workspaceId", workspace)
    command = commands.parse({"command": Command.CREATE.value, **fields})
    state = scope.execute(service.ledger, command, workspace)
    location = f"/v1/workspaces/{workspace}/runs/{state.id}"
    return _written(service, state, status=201, headers={"Location": location})


def _transition_route(
    command: Command,
) -> Callable[..., Coroutine[Any, Any, Response]]:
    async def transition(
        request: Request,
        service: ServiceDep,
        workspace: WorkspaceDep,
        run_id: RunIdPath,
        key: IdempotencyKey = None,
    ) -> Response:
        body = await bodies.read(request, bodies.COMMAND_BODY_LIMIT)
        return await run_in_threadpool(_transition, service, workspace, run_id, command, body, key)

    return transition


def _transition(
    service: Service, workspace: str, run_id: str, kind: Command, body: bytes, key: str | None
) -> Response:
    fields = _fields(body, optional=kind not in (Command.FAIL, Command.LINK_CF_WORKFLOW), key=key)
    if "runId" in fields:
        raise InvalidCommand(f"{kind.value}: runId is not a field of the body; the path names it")
    command = commands.parse({"command": kind.value, "runId": run_id, **fields})
    return _written(service, scope.execute(service.ledger, command, workspace))


for _segment, _command in ROUTES.items():
    router.add_api_route(
        f"/v1/workspaces/{{workspaceId}}/runs/{{runId}}/{_segment}",
        _transition_route(_command),
        methods=["POST"],
        operation_id=_command.value + "Run",
        summary=f"{_command.value} a run",
        response_model=WorkflowRun,
        responses={
            200: {"description": "The run's view", "headers": {**POSITION, **ETAG}},
            **errors(*_WRITE_ERRORS),
        },
        openapi_extra=request_body(
            BODY_OF.get(_command, "TransitionBody"),
            required=_command in (Command.FAIL, Command.LINK_CF_WORKFLOW),
        ),
    )


@router.post(
    "/v1/events:batch",
    operation_id="applyBatch",
    summary=f"Apply up to {bodies.MAX_BATCH:,} commands, each answered in order",
    response_model=list[Answer],
    responses={
        200: {
            "description": "One answer a command, in order, as `runledger apply` prints them; "
            "a rejected command does not stop the others",
            "headers": POSITION,
        },
        **errors("invalid", "too_large"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": bodies.MAX_BATCH,
                        "items": {"$ref": "#/components/schemas/BatchCommand"},
                    }
                }
            },
        }
    },
)
async def apply_batch(request: Request, service: ServiceDep, access: AccessDep) -> Response:
    body = await bodies.read(request, bodies.BATCH_BODY_LIMIT)
    return await run_in_threadpool(_batch, service, access.workspace, body)


def _batch(service: Service, workspace: str | None, body: bytes) -> Response:
    items: list[scope.Item] = []
    for item in bodies.batch_items(body):
        try:
            if not isinstance(item, dict):
                raise InvalidCommand('each command must be a JSON object such as {"command":...}')
            items.append(commands.parse(item))
        except RunLedgerError as error:
            items.append(error)
    answers = map(answer, scope.execute_batch(service.ledger, items, workspace))
    return Response(
        f"[{','.join(answers)}]",
        media_type="application/json",
        headers={"Ledger-Position": str(service.position())},
    )


def _fields(body: bytes, *, optional: bool, key: str | None) -> dict[str, Any]:
    fields = bodies.command_fields(body, optional=optional)
    if "command" in fields:
        raise InvalidCommand("command is not a field of the body; the path names it")
    if key is not None and fields.setdefault("idempotencyKey", key) != key:
        raise InvalidCommand("the Idempotency-Key header and idempotencyKey differ")
    return fields


def _written(
    service: Service, state: RunState, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        view_text(state),
        status_code=status,
        media_type="application/json",
        headers={
            "ETag": f'"{state.version}"',
            "Ledger-Position": str(service.position()),
            **(headers or {}),
        },
    )
