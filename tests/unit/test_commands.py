"""Commands as they arrive: `parse` validates them, or rejects them as `invalid` or
`too_large` with a message that names the field at fault."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import payload
from domain.commands import (
    MAX_COMMAND_BYTES,
    MODELS,
    CompleteRun,
    CreateRun,
    FailRun,
    RunCommand,
    parse,
)
from domain.errors import InvalidCommand, TooLarge
from domain.status import Command, Mode, TriggeredBy
from tests.builders import T0, at, command, create


def nested(levels: int, leaf: Any = 1) -> Any:
    """`leaf` inside `levels` arrays and objects, alternating."""
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


def sized(total_bytes: int, character: str = "x") -> dict[str, Any]:
    """A create whose JSON is `total_bytes` of UTF-8 (give or take one wide character)."""
    base = len(payload.dumps(create(input="")).encode())
    width = len(character.encode())
    return create(input=character * ((total_bytes - base) // width))


# Valid commands -----------------------------------------------------------------------------


def test_a_create_fills_in_the_contracts_defaults() -> None:
    parsed = parse(create(run_id=None))

    assert isinstance(parsed, CreateRun)
    assert parsed.run_id is None
    assert parsed.parent_run_id is None
    assert parsed.mode is Mode.ASYNC
    assert parsed.triggered_by is TriggeredBy.USER
    assert parsed.input is None
    assert parsed.cf_workflow_id is None
    assert parsed.at is None
    assert parsed.idempotency_key is None


@pytest.mark.parametrize("name", [kind.value for kind in Command if kind is not Command.CREATE])
def test_every_transition_parses_to_its_own_model(name: str) -> None:
    parsed = parse(command(name, at=at(1), actor="agent_1", reason="why", idempotencyKey="k1"))

    assert isinstance(parsed, RunCommand)
    assert type(parsed) is MODELS[Command(name)]
    assert (parsed.run_id, parsed.at) == ("run_1", T0 + timedelta(seconds=1))
    assert (parsed.actor, parsed.reason, parsed.idempotency_key) == ("agent_1", "why", "k1")


def test_complete_without_output_means_a_null_output() -> None:
    parsed = parse(command("complete"))

    assert isinstance(parsed, CompleteRun)
    assert parsed.output is None


def test_a_payload_is_kept_as_given() -> None:
    text = '{"price":1.10,"big":123456789012345678901234567890,"e":1e5,"s":"\u2028"}'

    parsed = parse(command("complete", output=payload.loads(text)))

    assert isinstance(parsed, CompleteRun)
    assert payload.dumps(parsed.output) == text


def test_at_is_kept_to_the_millisecond_in_utc() -> None:
    parsed = parse(command("start", at="2026-11-24T07:05:34.1209+02:00"))

    assert parsed.at == datetime(2026, 11, 24, 5, 5, 34, 120000, tzinfo=UTC)


def test_a_library_caller_may_give_at_as_an_aware_datetime() -> None:
    moment = datetime(2026, 11, 24, 5, 5, 34, 120999, tzinfo=UTC)

    parsed = parse(command("start", at=moment))

    assert parsed.at == datetime(2026, 11, 24, 5, 5, 34, 120000, tzinfo=UTC)


# invalid -------------------------------------------------------------------------------------


def names(field: str, message: str) -> bool:
    """Whether a rejection's message names a field (as a word: `at` is not in `start`)."""
    return re.search(rf"\b{re.escape(field)}\b", message) is not None


def rejection(data: dict[str, Any]) -> InvalidCommand:
    with pytest.raises(InvalidCommand) as caught:
        parse(data)
    assert caught.value.code == "invalid"
    return caught.value


@pytest.mark.parametrize("field", ["workspaceId", "subjectId", "userId"])
def test_a_create_without_a_required_field_is_invalid(field: str) -> None:
    data = create(**{field: None})

    error = rejection(data)

    assert f"{field} is required" in error.message


@pytest.mark.parametrize("name", ["start", "complete", "fail", "linkCfWorkflow"])
def test_a_transition_without_a_run_id_is_invalid(name: str) -> None:
    data = {key: value for key, value in command(name).items() if key != "runId"}

    error = rejection(data)

    assert "runId is required" in error.message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"runId": "run_1"}, id="no-command"),
        pytest.param(command("timeout"), id="unknown"),
        pytest.param(command("time-out"), id="cli-spelling"),
        pytest.param(command("Start"), id="case"),
        pytest.param({**command("start"), "command": 1}, id="not-a-string"),
    ],
)
def test_an_unknown_command_is_invalid(data: dict[str, Any]) -> None:
    error = rejection(data)

    assert "command must be one of" in error.message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(create(workspaceId=5), "workspaceId", id="workspaceId-number"),
        pytest.param(create(subjectId=["wf"]), "subjectId", id="subjectId-array"),
        pytest.param(create(mode=1), "mode", id="mode-number"),
        pytest.param(command("start", runId=True), "runId", id="runId-boolean"),
        pytest.param(command("start", at=1764000000000), "at", id="at-number"),
        pytest.param(command("pause", reason=7), "reason", id="reason-number"),
        pytest.param(command("pause", actor={"id": "a"}), "actor", id="actor-object"),
        pytest.param(command("fail", error=["boom"]), "error", id="error-array"),
        pytest.param(command("linkCfWorkflow", cfWorkflowId=1), "cfWorkflowId", id="cf-number"),
    ],
)
def test_a_field_of_the_wrong_type_is_invalid(data: dict[str, Any], field: str) -> None:
    error = rejection(data)

    assert names(field, error.message)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="empty"),
        pytest.param("_run", id="leading-underscore"),
        pytest.param("-run", id="leading-dash"),
        pytest.param("run 1", id="space"),
        pytest.param("run/1", id="slash"),
        pytest.param("rün", id="non-ascii"),
        pytest.param("run_1\n", id="trailing-newline"),
        pytest.param("r" * 129, id="129-characters"),
        pytest.param("run\x00", id="nul"),
    ],
)
@pytest.mark.parametrize(
    ("build", "field"),
    [
        pytest.param(lambda bad: create(runId=bad), "runId", id="runId"),
        pytest.param(lambda bad: create(workspaceId=bad), "workspaceId", id="workspaceId"),
        pytest.param(lambda bad: create(subjectId=bad), "subjectId", id="subjectId"),
        pytest.param(lambda bad: create(userId=bad), "userId", id="userId"),
        pytest.param(lambda bad: create(parentRunId=bad), "parentRunId", id="parentRunId"),
        pytest.param(lambda bad: create(cfWorkflowId=bad), "cfWorkflowId", id="cfWorkflowId"),
        pytest.param(lambda bad: create(idempotencyKey=bad), "idempotencyKey", id="create-key"),
        pytest.param(lambda bad: command("start", run_id=bad), "runId", id="transition-runId"),
        pytest.param(lambda bad: command("start", actor=bad), "actor", id="actor"),
        pytest.param(lambda bad: command("start", idempotencyKey=bad), "idempotencyKey", id="key"),
        pytest.param(
            lambda bad: command("linkCfWorkflow", cfWorkflowId=bad), "cfWorkflowId", id="link"
        ),
    ],
)
def test_a_malformed_identifier_is_invalid(build: Any, field: str, bad: str) -> None:
    data = build(bad)

    error = rejection(data)

    assert names(field, error.message)


def test_an_identifier_of_128_characters_is_valid() -> None:
    parsed = parse(command("start", run_id="r" * 128))

    assert parsed.run_id == "r" * 128


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "streaming"), ("mode", "SYNC"), ("triggeredBy", "cron"), ("triggeredBy", None)],
)
def test_an_unknown_mode_or_trigger_is_invalid(field: str, value: Any) -> None:
    data = {**create(), field: value}

    error = rejection(data)

    assert names(field, error.message)


@pytest.mark.parametrize("field", ["run_id", "status", "output", "error", "cfWorkflowID"])
def test_a_field_the_command_does_not_have_is_invalid(field: str) -> None:
    data = {**command("start"), field: "x"}

    error = rejection(data)

    assert names(field, error.message)


@pytest.mark.parametrize(
    "text",
    ["2026-11-24T05:05:34.120", "2026-11-24T05:05:34", "2026-11-24 05:05"],
)
def test_an_at_without_an_offset_is_invalid(text: str) -> None:
    error = rejection(command("start", at=text))

    assert "offset" in error.message


def test_an_at_given_as_a_naive_datetime_is_invalid() -> None:
    error = rejection(command("start", at=datetime(2026, 11, 24, 5, 5, 34)))

    assert "offset" in error.message


@pytest.mark.parametrize(
    "text", ["", "now", "2026-11-24", "2026-11-24T05:05:34Z\n", "2026-13-01T00:00:00Z"]
)
def test_a_malformed_at_is_invalid(text: str) -> None:
    error = rejection(command("start", at=text))

    assert names("at", error.message)
    assert repr(text) in error.message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({**command("fail"), "error": None}, id="null"),
        pytest.param({k: v for k, v in command("fail").items() if k != "error"}, id="missing"),
        pytest.param(command("fail", error=""), id="empty"),
        pytest.param(command("fail", error=" \n\t"), id="blank"),
    ],
)
def test_fail_without_an_error_is_invalid(data: dict[str, Any]) -> None:
    error = rejection(data)

    assert names("error", error.message)


def test_fail_keeps_its_error_message() -> None:
    parsed = parse(command("fail", error="card declined: insufficient funds"))

    assert isinstance(parsed, FailRun)
    assert parsed.error == "card declined: insufficient funds"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(create(input="a\x00b"), "input", id="input-string"),
        pytest.param(create(input={"a\x00": 1}), "input", id="input-key"),
        pytest.param(create(input=[[{"deep": ["\x00"]}]]), "input", id="input-nested"),
        pytest.param(command("complete", output="\x00"), "output", id="output"),
        pytest.param(command("pause", reason="lunch\x00"), "reason", id="reason"),
        pytest.param(command("fail", error="boom\x00"), "error", id="error"),
    ],
)
def test_the_character_u0000_is_invalid_anywhere(data: dict[str, Any], field: str) -> None:
    error = rejection(data)

    assert names(field, error.message)
    assert "U+0000" in error.message


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda value: create(input=value), id="input"),
        pytest.param(lambda value: command("complete", output=value), id="output"),
    ],
)
def test_a_payload_may_nest_100_levels_but_not_101(build: Any) -> None:
    accepted = parse(build(nested(100)))

    error = rejection(build(nested(101)))

    assert accepted.kind in ("create", "complete")
    assert "100 levels" in error.message


@pytest.mark.parametrize(
    "number",
    [float("nan"), float("inf"), float("-inf"), payload.ExactNumber("NaN")],
    ids=["nan", "infinity", "minus-infinity", "decimal-nan"],
)
def test_a_payload_number_that_is_not_finite_is_invalid(number: Any) -> None:
    error = rejection(command("complete", output={"score": [number]}))

    assert names("output", error.message)
    assert "finite" in error.message


@pytest.mark.parametrize("size", [None, 4096], ids=["size-measured", "size-given"])
def test_a_payload_holding_a_lone_surrogate_is_invalid(size: int | None) -> None:
    data = create(input="\ud800")

    with pytest.raises(InvalidCommand) as caught:
        parse(data, size=size)

    assert names("input", caught.value.message)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(create(input={1, 2}), id="input-set"),
        pytest.param(command("complete", output=[b"x"]), id="output-bytes"),
    ],
)
def test_a_payload_given_by_a_library_caller_that_is_not_json_is_invalid(
    data: dict[str, Any],
) -> None:
    error = rejection(data)

    assert "not JSON" in error.message


def test_a_rejection_names_every_field_at_fault() -> None:
    data = create(workspaceId=None, mode="fast", input="\x00")

    error = rejection(data)

    assert names("workspaceId", error.message)
    assert names("mode", error.message)
    assert names("input", error.message)


# too_large -----------------------------------------------------------------------------------


def test_a_command_of_exactly_the_limit_is_accepted() -> None:
    data = sized(MAX_COMMAND_BYTES)

    parsed = parse(data)

    assert len(payload.dumps(data).encode()) == MAX_COMMAND_BYTES
    assert parsed.kind == "create"


def test_a_command_one_byte_over_the_limit_is_too_large() -> None:
    data = sized(MAX_COMMAND_BYTES + 1)

    with pytest.raises(TooLarge) as caught:
        parse(data)

    assert caught.value.code == "too_large"
    assert f"{MAX_COMMAND_BYTES:,}" in caught.value.message


def test_the_limit_counts_bytes_of_utf8_not_characters() -> None:
    data = sized(MAX_COMMAND_BYTES + 64, character="é")

    with pytest.raises(TooLarge):
        parse(data)

    assert len(payload.dumps(data)) < MAX_COMMAND_BYTES


def test_a_transition_over_the_limit_is_too_large() -> None:
    data = command("complete", output=["x" * 1024] * 1024)

    with pytest.raises(TooLarge) as caught:
        parse(data)

    assert caught.value.code == "too_large"


def test_a_size_given_by_the_caller_is_the_size_checked() -> None:
    data = command("start")

    with pytest.raises(TooLarge):
        parse(data, size=MAX_COMMAND_BYTES + 1)
