"""The document at /openapi.json, made to say exactly what the service does.

Request bodies are read by the service itself (numbers exactly as written), so their schemas
are declared here, derived from the domain's command models (one description of a command,
not two); identifiers carry the domain's pattern. Responses are written by the service too;
the routes declare their models for the document only. Then the document is corrected where
FastAPI's defaults would not match: no 422 anywhere (a malformed request is 400 `invalid`),
errors as `application/problem+json`, `Stats.from` under its real name, bearer security when
tokens are on.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from domain.commands import MODELS, CreateRun, RunCommand
from domain.status import Command
from infrastructure.http.problems import KINDS, MEDIA_TYPE, Problem
from infrastructure.http.service import IDENTIFIER_PATTERN

SCHEMAS = "#/components/schemas/"
IDENTIFIER_FIELDS = {"runId", "workspaceId", "subjectId", "userId", "parentRunId"}
IDENTIFIER_FIELDS |= {"cfWorkflowId", "actor", "idempotencyKey"}
DESCRIPTION = """An event-sourced ledger of workflow runs: the contract of
shared/design/lifecycle.md over HTTP. Writes answer the run's view (the seed's WorkflowRun)
once its event is durable, with `Ledger-Position`: pass it as `minPosition` to a list, stats
or tree read to see your write there. Errors are application/problem+json with a stable
`code`."""


# What the routes declare -------------------------------------------------------------------


def header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": kind}}


POSITION = {
    "Ledger-Position": header(
        "The latest event's position once the write is durable; a read of the list, stats "
        "or tree with minPosition set to it sees the write.",
        "integer",
    )
}
ETAG = {"ETag": header('The run\'s version, quoted ("5"); send it as If-None-Match.')}


def errors(*codes: str) -> dict[int | str, dict[str, Any]]:
    """The problem responses of these codes (401 and 503 come with every /v1 route)."""
    by_status: dict[int, list[str]] = {}
    for code in ("unauthorized", *codes, "unavailable"):
        by_status.setdefault(KINDS[code].status, []).append(code)
    return {
        status: {
            "description": "Problem: " + ", ".join(names),
            "content": {MEDIA_TYPE: {"schema": {"$ref": SCHEMAS + "Problem"}}},
        }
        for status, names in sorted(by_status.items())
    }


def request_body(name: str, *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself."""
    content = {"application/json": {"schema": {"$ref": SCHEMAS + name}}}
    return {"requestBody": {"required": required, "content": content}}


BODY_OF: Mapping[Command, str] = {
    Command.COMPLETE: "CompleteRunBody",
    Command.FAIL: "FailRunBody",
    Command.LINK_CF_WORKFLOW: "LinkCfWorkflowBody",
}
"""The body schema of each transition; the others take TransitionBody."""


# The document --------------------------------------------------------------------------------


def install(app: FastAPI, *, secured: bool) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title="runledger",
                version=version("runledger"),
                description=DESCRIPTION,
                routes=app.routes,
            )
            _correct(schema, secured=secured)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _correct(schema: dict[str, Any], *, secured: bool) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components |= _schema_of(Problem) | _body_schemas()
    for component in components.values():
        _rename_property(component, "from_", "from")
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            if secured and path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}]
    if secured:
        schema["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token of one workspace (see `runledger serve --help`).",
            }
        }


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
    definitions = schema.pop("$defs", {})
    return {**definitions, model.__name__: schema}


def _body_schemas() -> dict[str, Any]:
    """Each command as `apply` reads it, and each route's body (the path gives the rest)."""
    schemas: dict[str, Any] = {}
    commands = []
    for kind, model in MODELS.items():
        found = _schema_of(model)
        command = found.pop(model.__name__)
        command["properties"] = {"command": {"const": kind.value}, **command["properties"]}
        command["required"] = ["command", *command.get("required", [])]
        schemas |= found | {model.__name__: _with_patterns(command)}
        commands.append({"$ref": SCHEMAS + model.__name__})
    schemas["BatchCommand"] = {
        "oneOf": commands,
        "description": "One command, as `apply` reads it.",
    }
    schemas["CreateRunBody"] = _body(CreateRun, optional=("workspaceId",))
    schemas["TransitionBody"] = _body(RunCommand)
    for kind, name in BODY_OF.items():
        schemas[name] = _body(MODELS[kind])
    return schemas


def _body(model: type[BaseModel], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    schema = _schema_of(model)[model.__name__]
    if model is not CreateRun:
        schema["properties"].pop("runId")
    required = [name for name in schema.pop("required", []) if name in schema["properties"]]
    if required := [name for name in required if name not in optional]:
        schema["required"] = required
    schema["title"] = model.__name__ + " (the path names the rest)"
    return _with_patterns(schema)


def _with_patterns(schema: dict[str, Any]) -> dict[str, Any]:
    for name, field in schema["properties"].items():
        if name in IDENTIFIER_FIELDS:
            for branch in field.get("anyOf", [field]):
                if branch.get("type") == "string":
                    branch["pattern"] = IDENTIFIER_PATTERN
    return schema


def _rename_property(schema: dict[str, Any], old: str, new: str) -> None:
    """`Stats.from` is `from_` in Python; its JSON says `from`, and so must the document."""
    properties = schema.get("properties")
    if not isinstance(properties, dict) or old not in properties:
        return
    schema["properties"] = {new if key == old else key: value for key, value in properties.items()}
    schema["required"] = [new if key == old else key for key in schema.get("required", [])]
