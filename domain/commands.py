"""Commands as they arrive (from the command line, `apply` lines or a library caller).

Each command is a frozen pydantic model whose fields are the contract's camelCase names;
`parse` turns a mapping into one, or raises `InvalidCommand` / `TooLarge` with a message
that names every field at fault.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from domain import identifiers, payload, timestamps
from domain.errors import InvalidCommand, RunLedgerError, TooLarge
from domain.status import Command, Mode, TriggeredBy

MAX_COMMAND_BYTES = 1 << 20
"""The default limit on one command's JSON, in bytes of UTF-8."""


_camel = functools.lru_cache(maxsize=None)(to_camel)


def _as_field_error(check: Callable[[Any, str], Any]) -> Callable[[Any, ValidationInfo], Any]:
    """Turns a domain check that raises RunLedgerError into a pydantic validator."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        try:
            return check(value, _camel(info.field_name or "value"))
        except RunLedgerError as error:
            raise PydanticCustomError("invalid", error.message) from None

    return validate


def _identifier(value: Any, field: str) -> str:
    return identifiers.check(_text(value, field), field=field)


def _fast(
    validate: Callable[[Any, ValidationInfo], Any], pattern: re.Pattern[str]
) -> Callable[[Any, ValidationInfo], Any]:
    """`validate`, after a shortcut for the common case: a string the pattern accepts is
    returned as it is, before the field's name is even looked up."""
    fullmatch = pattern.fullmatch

    def validate_fast(value: Any, info: ValidationInfo) -> Any:
        if type(value) is str and fullmatch(value):
            return value
        return validate(value, info)

    return validate_fast


def _timestamp(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidCommand(f"{field} has no offset: add Z or +hh:mm to name one instant")
        return timestamps.truncate(value.astimezone(UTC))
    if not isinstance(value, str):
        raise InvalidCommand(f"{field} must be an ISO-8601 string, not {_json_type(value)}")
    return timestamps.parse(value, field=field)


def _payload(value: Any, field: str) -> Any:
    payload.check(value, what=field)
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(f"{field} must be a string, not {_json_type(value)}")
    payload.check_text(value, what=field)
    return value


def _non_empty_text(value: Any, field: str) -> str:
    if _text(value, field).strip() == "":
        raise InvalidCommand(f"{field} must be a non-empty string")
    return value  # type: ignore[no-any-return]


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


Identifier = Annotated[
    str, BeforeValidator(_fast(_as_field_error(_identifier), identifiers.IDENTIFIER))
]
Timestamp = Annotated[datetime, BeforeValidator(_as_field_error(_timestamp))]
Payload = Annotated[Any, AfterValidator(_as_field_error(_payload))]
Text = Annotated[str, BeforeValidator(_as_field_error(_text))]
NonEmptyText = Annotated[str, BeforeValidator(_as_field_error(_non_empty_text))]


class _Command(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )
    kind: ClassVar[Command]


class CreateRun(_Command):
    kind = Command.CREATE

    workspace_id: Identifier
    subject_id: Identifier
    user_id: Identifier
    run_id: Identifier | None = None
    parent_run_id: Identifier | None = None
    mode: Mode = Mode.ASYNC
    triggered_by: TriggeredBy = TriggeredBy.USER
    input: Payload = None
    cf_workflow_id: Identifier | None = None
    at: Timestamp | None = None
    idempotency_key: Identifier | None = None


class RunCommand(_Command):
    """A command addressed to an existing run: every one but `create`."""

    run_id: Identifier
    at: Timestamp | None = None
    actor: Identifier | None = None
    reason: Text | None = None
    idempotency_key: Identifier | None = None

    def event_fields(self) -> dict[str, Any]:
        """The fields of the event this command appends, beyond the common ones."""
        return {}


class StartRun(RunCommand):
    kind = Command.START


class PauseRun(RunCommand):
    kind = Command.PAUSE


class ResumeRun(RunCommand):
    kind = Command.RESUME


class WaitRun(RunCommand):
    kind = Command.WAIT


class CompleteRun(RunCommand):
    kind = Command.COMPLETE
    output: Payload = None

    def event_fields(self) -> dict[str, Any]:
        return {"output_json": payload.dumps(self.output)}


class FailRun(RunCommand):
    kind = Command.FAIL
    error: NonEmptyText

    def event_fields(self) -> dict[str, Any]:
        return {"error": self.error}


class CancelRun(RunCommand):
    kind = Command.CANCEL


class TimeOutRun(RunCommand):
    kind = Command.TIME_OUT


class LinkCfWorkflow(RunCommand):
    kind = Command.LINK_CF_WORKFLOW
    cf_workflow_id: Identifier

    def event_fields(self) -> dict[str, Any]:
        return {"cf_workflow_id": self.cf_workflow_id}


AnyCommand = CreateRun | RunCommand
M = TypeVar("M", bound=_Command)

MODELS: Mapping[Command, type[CreateRun] | type[RunCommand]] = {
    model.kind: model
    for model in (
        CreateRun,
        StartRun,
        PauseRun,
        ResumeRun,
        WaitRun,
        CompleteRun,
        FailRun,
        CancelRun,
        TimeOutRun,
        LinkCfWorkflow,
    )
}


_MODEL_NAMED: Mapping[str, type[CreateRun] | type[RunCommand]] = {
    kind.value: model for kind, model in MODELS.items()
}


def parse(data: Mapping[str, Any], *, size: int | None = None) -> AnyCommand:
    """Validates one command given as a mapping with a "command" key and camelCase fields.

    `size` is the command's size in bytes of UTF-8 JSON when the caller already knows it;
    otherwise it is measured.
    """
    if size is None:
        size = payload.size_within(data, MAX_COMMAND_BYTES)
    if size > MAX_COMMAND_BYTES:
        raise TooLarge(
            f"the command is {size:,} bytes of JSON; the limit is {MAX_COMMAND_BYTES:,} bytes"
        )
    name = data.get("command")
    model = _MODEL_NAMED.get(name) if isinstance(name, str) else None
    if model is None:
        known = ", ".join(command.value for command in Command)
        raise InvalidCommand(f"command must be one of {known}; got {payload.dumps(name)}")
    fields = dict(data)
    del fields["command"]
    return validate(model, fields)


def validate(model: type[M], fields: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(fields, by_alias=True, by_name=False)
    except ValidationError as error:
        raise InvalidCommand(_describe(model.kind, error)) from None


def _describe(kind: Command, error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "the command"
        if item["type"] == "missing":
            problems.append(f"{field} is required")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{field} is not a field of {kind.value}")
        elif item["type"] == "enum":
            expected = item.get("ctx", {}).get("expected", "")
            problems.append(f"{field} must be {expected}, not {payload.dumps(item['input'])}")
        elif item["type"] == "invalid":
            problems.append(item["msg"])
        else:
            problems.append(f"{field} {item['msg']}")
    return f"{kind.value}: " + "; ".join(problems)
