"""Identifiers: the whole-string rule, and the run ids the ledger makes."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain import identifiers
from domain.errors import InvalidCommand
from tests import strategies

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RUN_ID = re.compile(r"run_[0-9A-HJKMNP-TV-Z]{26}")
MAX_MILLIS = (1 << 48) - 1


def ulid_millis(run_id: str) -> int:
    """The 48 bits of milliseconds at the head of a `run_` ULID, decoded independently."""
    number = 0
    for character in run_id.removeprefix("run_"):
        number = number * 32 + CROCKFORD.index(character)
    return number >> 80


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "7",
        "run_01JDQX3V6W8Q2Y6Z2V8K7J3N4M",
        "ws.prod:eu-1_a",
        "A" + "b" * 127,
        "0_.:-",
    ],
)
def test_an_identifier_of_1_to_128_allowed_characters_is_valid(value: str) -> None:
    checked = identifiers.check(value, field="runId")

    assert checked == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="129-characters"),
        pytest.param("_run", id="leading-underscore"),
        pytest.param(".run", id="leading-dot"),
        pytest.param(":run", id="leading-colon"),
        pytest.param("-run", id="leading-dash"),
        pytest.param("run_1\n", id="trailing-newline"),
        pytest.param("\nrun_1", id="leading-newline"),
        pytest.param("run 1", id="space"),
        pytest.param("run/1", id="slash"),
        pytest.param("run@1", id="at-sign"),
        pytest.param("rün", id="non-ascii-letter"),
        pytest.param("run\u0661", id="non-ascii-digit"),
        pytest.param("run\x00", id="nul"),
    ],
)
def test_an_identifier_breaking_the_rule_anywhere_is_invalid(value: str) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        identifiers.check(value, field="workspaceId")

    assert rejection.value.code == "invalid"
    assert "workspaceId" in rejection.value.message


@given(strategies.identifiers)
def test_every_generated_identifier_is_valid(value: str) -> None:
    checked = identifiers.check(value, field="runId")

    assert checked == value


# Run ids the ledger makes ------------------------------------------------------------------------


def test_a_new_run_id_is_run_and_26_crockford_characters() -> None:
    run_id = identifiers.new_run_id()

    assert RUN_ID.fullmatch(run_id)
    assert identifiers.check(run_id, field="runId") == run_id


def test_a_new_run_id_starts_with_the_clocks_milliseconds() -> None:
    before = time.time_ns() // 1_000_000

    run_id = identifiers.new_run_id()

    after = time.time_ns() // 1_000_000
    assert before <= ulid_millis(run_id) <= after


@given(st.integers(min_value=0, max_value=MAX_MILLIS))
def test_a_new_run_id_encodes_the_milliseconds_it_is_given(millis: int) -> None:
    run_id = identifiers.new_run_id(millis)

    assert ulid_millis(run_id) == millis
    assert RUN_ID.fullmatch(run_id)


@given(
    st.integers(min_value=0, max_value=MAX_MILLIS),
    st.integers(min_value=0, max_value=MAX_MILLIS),
)
def test_run_ids_made_in_a_later_millisecond_sort_later(earlier: int, later: int) -> None:
    assume(earlier < later)

    first, second = identifiers.new_run_id(earlier), identifiers.new_run_id(later)

    assert first < second


def test_two_run_ids_made_in_the_same_millisecond_differ() -> None:
    millis = 1_764_000_000_000

    ids = {identifiers.new_run_id(millis) for _ in range(100)}

    assert len(ids) == 100


# Derived run ids ----------------------------------------------------------------------------------


@given(strategies.identifiers, strategies.identifiers)
def test_a_derived_run_id_is_the_same_for_the_same_workspace_and_key(
    workspace: str, key: str
) -> None:
    first = identifiers.derived_run_id(workspace, key)

    second = identifiers.derived_run_id(workspace, key)

    assert first == second
    assert RUN_ID.fullmatch(first)


@given(strategies.identifiers, strategies.identifiers, strategies.identifiers)
def test_a_derived_run_id_differs_across_workspaces(workspace: str, other: str, key: str) -> None:
    assume(workspace != other)

    mine, theirs = (identifiers.derived_run_id(w, key) for w in (workspace, other))

    assert mine != theirs


@given(strategies.identifiers, strategies.identifiers, strategies.identifiers)
def test_a_derived_run_id_differs_across_keys(workspace: str, key: str, other: str) -> None:
    assume(key != other)

    mine, theirs = (identifiers.derived_run_id(workspace, k) for k in (key, other))

    assert mine != theirs


def test_a_derived_run_id_does_not_confuse_where_the_workspace_ends() -> None:
    pairs = [("ws_1", "a.b"), ("ws_1.a", "b"), ("ws_1a", ".b")]

    derived = {identifiers.derived_run_id(workspace, key) for workspace, key in pairs}

    assert len(derived) == len(pairs)
