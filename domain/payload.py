"""JSON payloads (`input`, `output`): the contract's limits, and exact numbers.

A payload is any JSON value with the contract's three limits, the same on every backend: no
string or key holds U+0000, nothing nests deeper than `MAX_DEPTH`, and numbers are finite.
Numbers come back exactly as they were given: a literal that a float would change (`1.10`,
`1e5`, `3.14159265358979323846`) is kept as a `Decimal`, and `dumps` writes it back digit for
digit.

Three more, where the contract is silent, so that what is accepted can be kept exactly and
read on every backend (README, "Where the contract is silent"): a string holds no lone UTF-16
surrogate (it has no UTF-8); a number fits PostgreSQL's `numeric` (`MAX_INTEGER_DIGITS`
before the point, `MAX_FRACTION_DIGITS` after), which the read model's `jsonb` columns hold;
and no object names a key twice, whose value would otherwise be lost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring
from typing import Any

from domain.errors import InvalidCommand

MAX_DEPTH = 100
MAX_INTEGER_DIGITS = 131_072
MAX_FRACTION_DIGITS = 16_383
"""PostgreSQL's `numeric`: digits before the decimal point, and after it (trailing zeros
count: `1.000` keeps three)."""

JsonValue = Any
"""None, bool, int, float, Decimal, str, list of JsonValue, dict of str to JsonValue."""


class ExactNumber(Decimal):
    """A number whose literal a float would change; it prints as the literal it was read from."""

    literal: str

    def __new__(cls, literal: str) -> ExactNumber:
        number = super().__new__(cls, literal)
        number.literal = literal
        return number

    def __str__(self) -> str:
        return self.literal

    def __repr__(self) -> str:
        return f"ExactNumber({self.literal!r})"


def _parse_float(text: str) -> float | Decimal:
    number = float(text)
    if math.isfinite(number) and repr(number) == text:
        return number
    try:
        return ExactNumber(text)
    except InvalidOperation:  # an exponent beyond what a Decimal holds (over 10**18)
        raise _OutOfRange(text) from None


def _reject_constant(name: str) -> None:
    raise InvalidCommand(f"{name} is not JSON: numbers must be finite")


_LONG_INT = 4000
"""Digits from which an integer is kept as a decimal (Python's int<->str limit is 4300)."""


def _parse_int(text: str) -> int | Decimal:
    if text == "-0" or len(text) > _LONG_INT:  # both come back exactly as written
        return ExactNumber(text)
    return int(text)


class _OutOfRange(Exception):
    """A number literal beyond the range a payload's numbers may take."""


class _TwiceNamed(Exception):
    """An object names a key twice."""


def _object(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    """An object, unless it names a key twice. (About 0.3 us an object more than the
    decoder's own dicts: 2.31 against 1.76 us for an `apply` line of two objects.)"""
    made = dict(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:  # pragma: no branch - one is named twice
            if key in seen:
                raise _TwiceNamed(key)
            seen.add(key)
    return made


_DECODER = json.JSONDecoder(
    parse_float=_parse_float,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
    object_pairs_hook=_object,
)


def loads(text: str, *, what: str = "JSON") -> JsonValue:
    """Parses JSON text, keeping numbers exact; NaN, Infinity, a key named twice and an
    exponent no Decimal holds are refused. (`check` is what enforces the other limits.)"""
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidCommand(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except _TwiceNamed as twice:
        raise InvalidCommand(
            f"{what} names the key {_short(str(twice))} twice in one object; "
            "each key may appear once"
        ) from None
    except _OutOfRange as number:
        raise _out_of_range(what, str(number)) from None
    except ValueError as error:  # JSONDecodeError among others
        raise InvalidCommand(f"{what} is not valid JSON: {error}") from None
    return value


def _out_of_range(what: str, literal: str) -> InvalidCommand:
    return InvalidCommand(
        f"{what} holds the number {_short(literal)}, beyond what can be stored: at most "
        f"{MAX_INTEGER_DIGITS:,} digits before the decimal point and {MAX_FRACTION_DIGITS:,} "
        "after"
    )


def _short(text: str, limit: int = 40) -> str:
    """A literal or key fit for a message: repr'd, its middle cut out if it is long."""
    if len(text) > limit:
        text = f"{text[: limit // 2]}...{text[-limit // 2 :]}"
    return repr(text)


def _fits(number: Decimal) -> bool:
    """Whether PostgreSQL's `numeric` holds the number as written (a finite one)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    if -exponent > MAX_FRACTION_DIGITS:
        return False
    return len(digits) + exponent <= MAX_INTEGER_DIGITS or not any(digits)


def check(value: JsonValue, *, what: str) -> None:
    """Raises InvalidCommand unless `value` is a JSON value within the contract's limits."""
    stack: list[tuple[JsonValue, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, what)
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if item.bit_length() > 4 * _LONG_INT:  # str() of it would fail
                raise InvalidCommand(f"{what} holds an integer too long to print; send it as JSON")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidCommand(f"{what} holds a number that is not finite: {item}")
        elif isinstance(item, Decimal):
            if not item.is_finite():
                raise InvalidCommand(f"{what} holds a number that is not finite: {item}")
            if not _fits(item):
                raise _out_of_range(what, str(item))
        elif isinstance(item, list | dict):
            if depth >= MAX_DEPTH:
                raise InvalidCommand(f"{what} nests deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise InvalidCommand(f"{what} has a key that is not a string: {key!r}")
                    _check_text(key, what)
                children: Iterable[JsonValue] = item.values()
            else:
                children = item
            for child in children:
                stack.append((child, depth + 1))
        else:
            raise InvalidCommand(f"{what} holds a {type(item).__name__}, which is not JSON")


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise InvalidCommand(f"{what} holds the character U+0000, which cannot be stored")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidCommand(
                f"{what} holds a lone UTF-16 surrogate, which is not a character (on a "
                "command line: bytes that are not UTF-8)"
            ) from None


def check_text(text: str, *, what: str) -> None:
    """A string field (not a payload) obeys the same rules as the strings of a payload."""
    _check_text(text, what)


def size(value: JsonValue) -> int:
    """Bytes of UTF-8 of a command's compact JSON; any non-JSON value counts as its str()."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode(errors="surrogatepass"))


def size_within(fields: Mapping[str, JsonValue], limit: int) -> int:
    """`size(fields)` if it may exceed `limit`; else a bound at most `limit`, found without
    writing the JSON out: a string or key takes at most 6 bytes a character (`\\uXXXX`),
    plus quotes, colon and comma; a number or constant at most 24 (the longest `repr` of a
    float); an integer its decimal digits and sign. Any other value is measured exactly."""
    bound = _bound(fields, limit)
    return size(fields) if bound is None else bound


def _bound(value: JsonValue, limit: int) -> int | None:
    """A bound on `size(value)`, or None once it passes `limit` or meets a value of another
    type (a `Decimal`, a tuple, ...)."""
    bound = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            bound += 6 * len(item) + 2
        elif item is None or kind is bool or kind is float:
            bound += 24
        elif kind is int:
            bound += item.bit_length() // 3 + 3  # decimal digits, sign included
        elif kind is dict:
            bound += 2
            for key, child in item.items():
                if type(key) is not str:
                    return None
                bound += 6 * len(key) + 4
                stack.append(child)
        elif kind is list:
            bound += 2 + len(item)
            stack.extend(item)
        else:
            return None
        if bound > limit:
            return None
    return bound


class _HasDecimal(Exception):
    pass


def _no_decimal(value: object) -> object:
    if isinstance(value, Decimal):
        raise _HasDecimal
    raise TypeError(f"a {type(value).__name__} is not JSON")


_FAST = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_no_decimal)
_encode_string: Callable[[str], str] = json.JSONEncoder(ensure_ascii=False).encode
_fast_chunks: Callable[[JsonValue, int], Iterable[str]] = (
    _c_make_encoder(None, _no_decimal, encode_basestring, None, ":", ",", False, False, True)
    if _c_make_encoder is not None
    else lambda value, _: [_FAST.encode(value)]  # pragma: no cover - CPython has the C one
)
"""What `_FAST.encode` runs, made once: the encoder makes it again at every call, which
was two thirds of the time for a small payload (1.30 against 0.44 us for `{"n":1}`). It
keeps no markers to find a cycle (`check` has refused a payload with one: too deep)."""


def dumps(value: JsonValue) -> str:
    """Compact JSON text, with `Decimal` numbers written exactly as they were read."""
    try:
        return "".join(_fast_chunks(value, 0))
    except _HasDecimal:
        return "".join(_iter_exact(value))


def _iter_exact(value: JsonValue) -> Iterator[str]:
    if isinstance(value, Decimal):
        yield str(value)
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + _encode_string(key) + ":"
            yield from _iter_exact(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _iter_exact(item)
        yield "]"
    else:
        yield _FAST.encode(value)


def same(left: JsonValue, right: JsonValue) -> bool:
    """JSON equality: key order is ignored, `true` is not `1`, and `1.0` equals `1`."""
    if isinstance(left, bool) or isinstance(right, bool) or left is None or right is None:
        return type(left) is type(right) and left == right
    if isinstance(left, int | float | Decimal) and isinstance(right, int | float | Decimal):
        return Decimal(repr(left) if isinstance(left, float) else left) == Decimal(
            repr(right) if isinstance(right, float) else right
        )
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return False
