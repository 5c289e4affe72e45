"""Payloads (`input`, `output`): exact numbers and strings, the contract's three limits, and the
ledger's own three (no lone surrogate, numbers PostgreSQL's `numeric` holds, no key twice)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain import payload
from domain.errors import InvalidCommand
from tests import strategies


def nested(levels: int, leaf: Any = 0, *, container: str = "array") -> Any:
    """`leaf` inside `levels` arrays (or objects)."""
    value = leaf
    for _ in range(levels):
        value = [value] if container == "array" else {"k": value}
    return value


# Exact numbers and strings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1.10",
        "1e5",
        "1E5",
        "1e-7",
        "2.5E+3",
        "3.14159265358979323846",
        "0.1",
        "-0.0",
        "100000000000000000000.0",
        "123456789012345678901234567890",
        "-98765432109876543210987654321",
        "9007199254740993",
        "1e400",
        "0",
        "-1",
    ],
)
def test_a_number_comes_back_exactly_as_it_was_given(text: str) -> None:
    value = payload.loads(text)

    assert payload.dumps(value) == text


def test_minus_zero_comes_back_exactly_as_it_was_given() -> None:
    value = payload.loads("-0")

    assert payload.dumps(value) == "-0"


def test_numbers_inside_arrays_and_objects_come_back_exactly() -> None:
    text = '{"price":1.10,"qty":[1e5,3.14159265358979323846],"id":123456789012345678901234567890}'

    value = payload.loads(text)

    assert payload.dumps(value) == text


@pytest.mark.parametrize(
    "text",
    [
        "héllo",
        "日本語のテキスト",
        "line\u2028separator\u2029paragraph",
        "emoji 🎉 and astral 𝄞",
        'quote " backslash \\ tab \t',
        "new\nline",
        "",
    ],
)
def test_a_string_comes_back_exactly_as_it_was_given(text: str) -> None:
    value = payload.loads(payload.dumps({"s": text, text: "key"}))

    assert value == {"s": text, text: "key"}


def test_dumps_writes_u2028_as_is_and_never_a_raw_newline() -> None:
    text = payload.dumps(["a\u2028b", "c\nd"])

    assert "\u2028" in text
    assert "\n" not in text


def test_dumps_is_compact_and_keeps_key_order() -> None:
    text = payload.dumps({"b": 1, "a": [True, None, "x"]})

    assert text == '{"b":1,"a":[true,null,"x"]}'


# Limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["array", "object"])
def test_a_payload_may_nest_100_levels(container: str) -> None:
    value = nested(100, container=container)

    payload.check(value, what="input")

    assert payload.loads(payload.dumps(value)) == value


@pytest.mark.parametrize("container", ["array", "object"])
def test_a_payload_nested_101_levels_is_invalid(container: str) -> None:
    value = nested(101, container=container)

    with pytest.raises(InvalidCommand) as rejection:
        payload.check(value, what="input")

    assert rejection.value.code == "invalid"
    assert "input" in rejection.value.message
    assert "100 levels" in rejection.value.message


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\x00", id="string"),
        pytest.param("before\x00after", id="inside-string"),
        pytest.param({"\x00": 1}, id="key"),
        pytest.param({"a": [{"b": "\x00"}]}, id="nested-string"),
        pytest.param([{"ok": 1}, {"k\x00": None}], id="nested-key"),
    ],
)
def test_the_character_u0000_is_invalid_in_a_string_or_a_key(value: Any) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        payload.check(value, what="output")

    assert rejection.value.code == "invalid"
    assert "U+0000" in rejection.value.message


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), Decimal("NaN"), Decimal("-Infinity")],
    ids=["nan", "infinity", "minus-infinity", "decimal-nan", "decimal-minus-infinity"],
)
def test_a_number_that_is_not_finite_is_invalid(value: Any) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        payload.check({"x": [value]}, what="output")

    assert rejection.value.code == "invalid"
    assert "finite" in rejection.value.message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1e131071", id="131072-digits-before-the-point"),
        pytest.param("9" * 131_072, id="an-integer-of-131072-digits"),
        pytest.param("-9.99e131071", id="negative"),
        pytest.param("1e-16383", id="16383-digits-after-the-point"),
        pytest.param("0." + "0" * 16_382 + "1", id="16383-decimals-written-out"),
        pytest.param("1." + "0" * 16_383, id="16383-trailing-zeros"),
        pytest.param("0e999999", id="zero-with-a-large-exponent"),
    ],
)
def test_a_number_postgresqls_numeric_holds_is_accepted_and_kept_as_written(text: str) -> None:
    value = payload.loads(f"[{text}]")

    payload.check(value, what="input")

    assert payload.dumps(value) == f"[{text}]"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1e131072", id="131073-digits-before-the-point"),
        pytest.param("1" + "0" * 131_072, id="an-integer-of-131073-digits"),
        pytest.param("10e131071", id="two-digits-and-an-exponent"),
        pytest.param("1e-16384", id="16384-digits-after-the-point"),
        pytest.param("1.0e-16383", id="a-trailing-zero-past-the-limit"),
        pytest.param("1." + "0" * 16_384, id="16384-trailing-zeros"),
        pytest.param("1.1e99999999999999999999", id="an-exponent-no-decimal-holds"),
    ],
)
def test_a_number_beyond_postgresqls_numeric_is_invalid_with_a_short_message(text: str) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        payload.check(payload.loads(f'{{"x":[{text}]}}', what="input"), what="input")

    assert rejection.value.code == "invalid"
    assert "digits before the decimal point" in rejection.value.message
    assert len(rejection.value.message) < 200


@pytest.mark.parametrize(
    "text",
    ['{"a":1,"a":1}', '{"a":1,"b":2,"a":3}', '[{"x":{"k":1,"k":{}}}]', '{"":0,"":0}'],
)
def test_an_object_that_names_a_key_twice_is_invalid(text: str) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        payload.loads(text, what="input")

    assert rejection.value.code == "invalid"
    assert rejection.value.message.startswith("input names the key ")
    assert "twice" in rejection.value.message


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"x":[1,NaN]}'])
def test_json_text_with_nan_or_infinity_is_invalid(text: str) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        payload.loads(text)

    assert rejection.value.code == "invalid"


@pytest.mark.parametrize("text", ["", "{", "[1,]", "{'a':1}", "undefined", '{"a":1}x', "01"])
def test_text_that_is_not_json_is_invalid(text: str) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        payload.loads(text, what="--output")

    assert rejection.value.code == "invalid"
    assert "--output" in rejection.value.message


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {1, 2}, b"bytes", object()],
    ids=["int-key", "set", "bytes", "object"],
)
def test_a_python_value_that_is_not_json_is_invalid(value: Any) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        payload.check(value, what="input")

    assert rejection.value.code == "invalid"


# JSON equality --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, id="key-order"),
        pytest.param(1.0, 1, id="1.0-is-1"),
        pytest.param(payload.loads("1.10"), 1.1, id="exact-1.10-is-1.1"),
        pytest.param(payload.loads("1e5"), 100000, id="exact-1e5-is-100000"),
        pytest.param(None, None, id="null"),
        pytest.param(True, True, id="true"),
        pytest.param([1, [2.0, {"x": "y"}]], [1.0, [2, {"x": "y"}]], id="nested"),
    ],
)
def test_same_is_json_equality(left: Any, right: Any) -> None:
    assert payload.same(left, right)
    assert payload.same(right, left)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(True, 1, id="true-is-not-1"),
        pytest.param(False, 0, id="false-is-not-0"),
        pytest.param(None, 0, id="null-is-not-0"),
        pytest.param(None, False, id="null-is-not-false"),
        pytest.param("1", 1, id="string-is-not-number"),
        pytest.param([1, 2], [2, 1], id="array-order"),
        pytest.param({"a": 1}, {"a": 1, "b": None}, id="missing-key"),
        pytest.param([1], [1, 1], id="array-length"),
        pytest.param(payload.loads("3.14159265358979323846"), 3.141592653589793, id="digits"),
        pytest.param({"a": [True]}, {"a": [1]}, id="nested-true-is-not-1"),
    ],
)
def test_same_tells_different_json_apart(left: Any, right: Any) -> None:
    assert not payload.same(left, right)
    assert not payload.same(right, left)


# Laws ----------------------------------------------------------------------------------------


@given(strategies.json_values)
def test_a_payload_survives_a_round_trip_through_its_text(value: Any) -> None:
    text = payload.dumps(value)

    again = payload.loads(text)

    assert payload.same(again, value)
    assert payload.dumps(again) == text


@given(strategies.json_values)
def test_a_generated_payload_is_within_the_limits_and_its_text_is_one_line(value: Any) -> None:
    payload.check(value, what="input")

    text = payload.dumps(value)

    assert "\n" not in text


# Sizes -----------------------------------------------------------------------------------------


@given(
    st.dictionaries(
        strategies.json_text,
        strategies.json_values | st.integers() | st.text() | st.floats(allow_nan=False),
        max_size=6,
    ),
    st.integers(min_value=0, max_value=400),
)
@example({"": "\x01" * 10}, 400)  # a character escaped as \u0001 takes 6 bytes
@example({"\x1f" * 5: None}, 400)
@example({"": -(2**200)}, 400)  # digits and the sign
@example({"": -(2**10)}, 400)
@example({"": -2.2250738585072014e-308}, 400)  # the longest repr of a float
@example({"": "é" * 20, "x": {"y": ["\x00" * 3]}}, 400)
@example({"": {"\x01" * 9: ["\x01" * 9, -(2**200), -2.2250738585072014e-308, False]}}, 400)
@example({"": [[[[[]]], []], [None, True]]}, 400)
@example({"": [[], [], [], []]}, 400)  # the tightest elements: empty lists and strings, commas
@example({"": ["", "", "", ""]}, 400)
def test_size_within_is_the_size_past_the_limit_and_a_bound_on_it_below(
    fields: dict[str, Any], limit: int
) -> None:
    exact = payload.size(fields)

    found = payload.size_within(fields, limit)

    assert found == exact if found > limit else exact <= found
