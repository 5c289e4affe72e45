"""Aligned text tables for a person at a terminal.

Every cell is made safe to print: control and format characters (newlines, tabs, escape
sequences, bidirectional overrides) are shown escaped (`\\n`, `\\x1b`, `\\u202e`), so a value
cannot move the cursor, colour the terminal or reorder what follows it. Columns are aligned
by display width (a wide CJK character takes two columns, a combining mark none), and a cell
longer than its column's limit ends in `…`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from domain import payload

NULL = "-"
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def cell(value: Any, *, limit: int | None = None) -> str:
    """A value as a cell: null as `-`, text as is, anything else as compact JSON."""
    if value is None:
        text = NULL
    elif isinstance(value, str):
        text = value
    else:
        text = payload.dumps(value)
    return _shorten(escape(text), limit)


def escape(text: str) -> str:
    if all(unicodedata.category(char) not in _UNSAFE for char in text):
        return text
    return "".join(_escape_char(char) for char in text)


def _escape_char(char: str) -> str:
    if unicodedata.category(char) not in _UNSAFE:
        return char
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def width(text: str) -> int:
    """How many terminal columns the text takes."""
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def _shorten(text: str, limit: int | None) -> str:
    if limit is None or width(text) <= limit:
        return text
    kept, used = [], 0
    for char in text:
        used += width(char)
        if used > limit - 1:
            break
        kept.append(char)
    return "".join(kept) + "…"


def render(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The table's lines: a header, then one line a row, columns two spaces apart."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(width(row[column]) for row in table) for column in range(len(headers))]
    return [
        "  ".join(
            text + " " * (widths[column] - width(text)) for column, text in enumerate(row)
        ).rstrip()
        for row in table
    ]
