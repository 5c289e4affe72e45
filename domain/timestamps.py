"""Timestamps: ISO-8601 with an offset in, milliseconds kept, JavaScript's toISOString() out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from domain.errors import InvalidCommand

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of the ledger's clock an `at` may be."""

_ISO_8601 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"(?P<offset>[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?"
)


def parse(text: str, *, field: str = "at") -> datetime:
    """Parses an ISO-8601 timestamp that carries an offset; returns it in UTC, to the ms."""
    match = _ISO_8601.fullmatch(text)
    if match is None:
        raise InvalidCommand(
            f"{field} must be an ISO-8601 timestamp such as 2026-11-24T05:05:34.120Z, not {text!r}"
        )
    if match["offset"] is None:
        raise InvalidCommand(
            f"{field} {text!r} has no offset: add Z or +hh:mm so that it names one instant"
        )
    iso = text.replace(",", ".")
    if match["offset"] in ("z", "Z"):  # Python's parser takes only the capital
        iso = iso[:-1] + "+00:00"
    try:
        return truncate(datetime.fromisoformat(iso).astimezone(UTC))
    except (ValueError, OverflowError) as error:
        raise InvalidCommand(f"{field} {text!r} is not a valid timestamp: {error}") from None


def truncate(moment: datetime) -> datetime:
    """Drops the digits finer than a millisecond."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


_PRINTED: dict[datetime, str] = {}
_PRINTED_KEPT = 4096


def to_iso(moment: datetime) -> str:
    """Prints a moment as JavaScript's toISOString() does: `2026-11-24T05:05:34.120Z`.

    The moments printed last are kept with their text: a run's answer prints up to four,
    often the same, and a burst of commands shares its milliseconds (a lookup costs a
    tenth of printing)."""
    text = _PRINTED.get(moment)
    if text is None:
        text = moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # +00:00
        if len(_PRINTED) >= _PRINTED_KEPT:
            _PRINTED.clear()
        _PRINTED[moment] = text
    return text


def millis_between(earlier: datetime, later: datetime) -> int:
    """Whole milliseconds from `earlier` to `later` (both already truncated to the ms)."""
    return (later - earlier) // timedelta(milliseconds=1)


def check_not_in_future(at: datetime, now: datetime) -> None:
    if at > now + MAX_CLOCK_SKEW:
        raise InvalidCommand(
            f"at {to_iso(at)} is more than {MAX_CLOCK_SKEW.seconds // 60} minutes ahead of "
            f"the ledger's clock ({to_iso(now)})"
        )
