"""Timestamps: ISO-8601 with an offset in, kept to the millisecond, printed as JavaScript's
`toISOString()` prints them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import timestamps
from domain.errors import InvalidCommand
from tests.builders import T0


def js_iso(moment: datetime) -> str:
    """What `new Date(moment).toISOString()` prints, by another route than the product's."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


instants = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
    ),
)


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-24T05:05:34.120Z", "2026-11-24T05:05:34.120Z"),
        ("2026-11-24T05:05:34Z", "2026-11-24T05:05:34.000Z"),
        ("2026-11-24T05:05:34.1Z", "2026-11-24T05:05:34.100Z"),
        ("2026-11-24T05:05:34.120+00:00", "2026-11-24T05:05:34.120Z"),
        ("2026-11-24T05:05:34.120-00:00", "2026-11-24T05:05:34.120Z"),
        ("2026-11-24T10:35:34.120+05:30", "2026-11-24T05:05:34.120Z"),
        ("2026-11-23T23:05:34.120-06:00", "2026-11-24T05:05:34.120Z"),
        ("2026-01-01T00:30:00.000+01:00", "2025-12-31T23:30:00.000Z"),
    ],
)
def test_a_timestamp_with_an_offset_names_one_instant_printed_in_utc(text: str, utc: str) -> None:
    moment = timestamps.parse(text)

    assert timestamps.to_iso(moment) == utc
    assert moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-24T05:05:34.1209Z", "2026-11-24T05:05:34.120Z"),
        ("2026-11-24T05:05:34.1205Z", "2026-11-24T05:05:34.120Z"),
        ("2026-11-24T05:05:34.123999Z", "2026-11-24T05:05:34.123Z"),
        ("2026-11-24T05:05:34.9999999Z", "2026-11-24T05:05:34.999Z"),
        ("2026-11-24T05:05:34.0009999Z", "2026-11-24T05:05:34.000Z"),
        ("2026-12-31T23:59:59.999999+00:00", "2026-12-31T23:59:59.999Z"),
    ],
)
def test_digits_finer_than_a_millisecond_are_dropped_not_rounded(text: str, utc: str) -> None:
    moment = timestamps.parse(text)

    assert timestamps.to_iso(moment) == utc
    assert moment.microsecond % 1000 == 0


def test_the_printed_form_is_javascripts_to_iso_string() -> None:
    moment = datetime(2026, 11, 24, 5, 5, 34, 120000, tzinfo=UTC)

    printed = timestamps.to_iso(moment)

    assert printed == "2026-11-24T05:05:34.120Z"


def test_a_moment_in_another_zone_is_printed_in_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 24, 0, 0, 0, tzinfo=timezone(timedelta(hours=-5)))

    printed = timestamps.to_iso(moment)

    assert printed == "2026-11-24T05:00:00.000Z"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T05:05:34.120",
        "2026-11-24T05:05:34",
        "2026-11-24T05:05",
    ],
)
def test_a_timestamp_without_an_offset_is_rejected_as_invalid(text: str) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        timestamps.parse(text)

    assert rejection.value.code == "invalid"
    assert "offset" in rejection.value.message
    assert repr(text) in rejection.value.message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-11-24",
        "1764000000",
        "2026-11-24T05:05:34.120Z\n",
        " 2026-11-24T05:05:34.120Z",
        "2026-11-24T05:05:34.120ZZ",
        "2026-11-24T05:05:34.120+05",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T05:61:00Z",
        "2026-11-24T05:05:34.120+24:00",
        "Tue, 24 Nov 2026 05:05:34 GMT",
    ],
)
def test_a_garbled_timestamp_is_rejected_as_invalid(text: str) -> None:
    with pytest.raises(InvalidCommand) as rejection:
        timestamps.parse(text, field="--as-of")

    assert rejection.value.code == "invalid"
    assert "--as-of" in rejection.value.message


@given(instants)
def test_printing_agrees_with_to_iso_string_for_any_instant(moment: datetime) -> None:
    printed = timestamps.to_iso(moment)

    assert printed == js_iso(moment)


@given(instants)
def test_a_printed_timestamp_parses_back_to_the_same_millisecond(moment: datetime) -> None:
    kept = timestamps.truncate(moment)

    parsed = timestamps.parse(timestamps.to_iso(moment))

    assert parsed == kept
    assert timestamps.to_iso(parsed) == timestamps.to_iso(moment)


@given(instants)
def test_truncation_drops_only_the_microseconds_below_a_millisecond(moment: datetime) -> None:
    kept = timestamps.truncate(moment)

    assert timedelta(0) <= moment - kept < timedelta(milliseconds=1)
    assert kept.microsecond % 1000 == 0


def test_millis_between_counts_whole_milliseconds() -> None:
    later = T0 + timedelta(minutes=2, milliseconds=345)

    elapsed = timestamps.millis_between(T0, later)

    assert elapsed == 120_345


def test_the_ledgers_clock_allows_an_at_up_to_five_minutes_ahead() -> None:
    timestamps.check_not_in_future(T0 + timedelta(minutes=5), T0)

    with pytest.raises(InvalidCommand) as rejection:
        timestamps.check_not_in_future(T0 + timedelta(minutes=5, milliseconds=1), T0)

    assert "5 minutes" in rejection.value.message
