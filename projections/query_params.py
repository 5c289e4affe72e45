"""The dashboard queries' parameters: filters checked as they are built (a bad one is
`invalid`, with a message a person can act on), and the cursor of `runs`.

Each has a `parse` that takes text, as the command line and the HTTP service receive it. Both
show these messages, so they name a parameter by its field (`bucket`, `parentRunId`), which
each surface spells its own way (`--bucket`, `?bucket=`), never by a command-line option.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from pydantic.alias_generators import to_camel

from domain import identifiers, timestamps
from domain.errors import InvalidCommand, TooLarge
from domain.status import RunStatus, TriggeredBy

E = TypeVar("E", bound=StrEnum)

DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
DEFAULT_WINDOW = timedelta(hours=24)
MAX_BUCKETS = 10_000
MAX_TREE_NODES = 10_000
MAX_TREE_DEPTH = 100
MAX_IDLE = timedelta(days=3650)
PERCENTILES = (0.5, 0.95, 0.99)
_IDLE = re.compile(r"(?:\d{1,9}(?:ms|s|m|h|d))+")
_IDLE_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


# Parameters ---------------------------------------------------------------------------------


class Bucket(StrEnum):
    HOUR = "hour"
    DAY = "day"

    def floor(self, moment: datetime) -> datetime:
        hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return hour if self is Bucket.HOUR else hour.replace(hour=0)

    @property
    def step(self) -> timedelta:
        return timedelta(hours=1) if self is Bucket.HOUR else timedelta(days=1)


@dataclass(frozen=True)
class Position:
    """A place in the newest-first order: what a cursor encodes."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        text = f"{timestamps.to_iso(self.created_at)}|{self.id}"
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            moment, run_id = text.split("|")
            return cls(timestamps.parse(moment), identifiers.check(run_id, field="id"))
        except (ValueError, InvalidCommand):  # binascii.Error and UnicodeError are ValueErrors
            raise InvalidCommand(
                f"cursor {cursor[:60]!r} is not a nextCursor that a page of runs gave; "
                "start again without a cursor"
            ) from None


@dataclass(frozen=True)
class RunsQuery:
    """`runs`: filters (each optional but the workspace), a page size, where to go on from."""

    workspace_id: str
    statuses: tuple[RunStatus, ...] = ()
    triggered_by: TriggeredBy | None = None
    subject_id: str | None = None
    parent_run_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None

    def __post_init__(self) -> None:
        _check_ids(self, "workspace_id", "subject_id", "parent_run_id")
        statuses = tuple(sorted({_choice(RunStatus, s, "status") for s in self.statuses}))
        object.__setattr__(self, "statuses", statuses)  # each once: one scan a status
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidCommand(f"limit must be 1 to {MAX_LIMIT}, not {self.limit}")

    @classmethod
    def parse(
        cls,
        *,
        workspace_id: str,
        statuses: Iterable[str] = (),
        triggered_by: str | None = None,
        subject_id: str | None = None,
        parent_run_id: str | None = None,
        created_from: str | None = None,
        created_to: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RunsQuery:
        """From text, as the command line and the HTTP service take it."""
        return cls(
            workspace_id=workspace_id,
            statuses=tuple(_choice(RunStatus, s, "status") for s in statuses),
            triggered_by=None if triggered_by is None else _choice(TriggeredBy, triggered_by),
            subject_id=subject_id,
            parent_run_id=parent_run_id,
            created_from=_moment(created_from, "createdFrom"),
            created_to=_moment(created_to, "createdTo"),
            limit=DEFAULT_LIMIT if limit is None else limit,
            after=None if cursor is None else Position.decode(cursor),
        )


@dataclass(frozen=True)
class StatsQuery:
    """`stats` over [start, end): counts of the runs created, durations of those finished."""

    workspace_id: str
    start: datetime
    end: datetime
    subject_id: str | None = None
    bucket: Bucket = Bucket.HOUR

    def __post_init__(self) -> None:
        _check_ids(self, "workspace_id", "subject_id")
        if self.start >= self.end:
            raise InvalidCommand("from must be earlier than to")
        if (self.end - self.bucket.floor(self.start)) / self.bucket.step > MAX_BUCKETS:
            coarser = ", or set bucket to day" if self.bucket is Bucket.HOUR else ""
            raise InvalidCommand(
                f"[from, to) spans more than {MAX_BUCKETS:,} {self.bucket.value}s: "
                f"narrow it (bring from and to closer){coarser}"
            )

    @classmethod
    def parse(
        cls,
        *,
        workspace_id: str,
        now: datetime,
        start: str | None = None,
        end: str | None = None,
        subject_id: str | None = None,
        bucket: str | None = None,
    ) -> StatsQuery:
        """From text; without `start` the window is the 24 hours before `end`, and `end` is
        `now` (the ledger's clock) unless given."""
        end_at = _moment(end, "to") or now
        return cls(
            workspace_id=workspace_id,
            start=_moment(start, "from") or end_at - DEFAULT_WINDOW,
            end=end_at,
            subject_id=subject_id,
            bucket=Bucket.HOUR if bucket is None else _choice(Bucket, bucket, "bucket"),
        )

    def bucket_starts(self) -> list[datetime]:
        first = self.bucket.floor(self.start)
        count = math.ceil((self.end - first) / self.bucket.step)
        return [first + i * self.bucket.step for i in range(count)]


@dataclass(frozen=True)
class TreeQuery:
    """`tree`: a run and its descendants; in `workspace_id` only, when it is given."""

    run_id: str
    workspace_id: str | None = None
    max_nodes: int = MAX_TREE_NODES
    max_depth: int = MAX_TREE_DEPTH

    def __post_init__(self) -> None:
        _check_ids(self, "run_id", "workspace_id")


@dataclass(frozen=True)
class StuckQuery:
    """`stuck`: open runs of a workspace with no event for `idle_for` before `now`."""

    workspace_id: str
    idle_for: timedelta
    now: datetime
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        _check_ids(self, "workspace_id")
        if not timedelta(0) < self.idle_for <= MAX_IDLE:
            raise InvalidCommand(f"idleFor must be more than 0 and at most {MAX_IDLE.days} days")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidCommand(f"limit must be 1 to {MAX_LIMIT}, not {self.limit}")

    @property
    def idle_since(self) -> datetime:
        return self.now - self.idle_for

    @classmethod
    def parse(
        cls, *, workspace_id: str, idle_for: str, now: datetime, limit: int | None = None
    ) -> StuckQuery:
        """`idle_for` as a duration such as `90s`, `30m`, `2h`, `1d`, `1h30m`."""
        if _IDLE.fullmatch(idle_for) is None:
            raise InvalidCommand(
                f"idleFor must be a duration such as 30m, 2h, 1d or 1h30m, not {idle_for[:40]!r}"
            )
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _IDLE_PART.findall(idle_for))
        if seconds > MAX_IDLE.total_seconds():
            raise InvalidCommand(f"idleFor must be at most {MAX_IDLE.days} days")
        limit = DEFAULT_LIMIT if limit is None else limit
        return cls(workspace_id, timedelta(seconds=seconds), now, limit)


class TooManyNodes(TooLarge):
    def __init__(self, query: TreeQuery, what: str) -> None:
        super().__init__(
            f"run {query.run_id!r} has {what} in its tree; list its children page by page: "
            f"the runs whose parentRunId is {query.run_id!r}"
        )


def _check_ids(query: object, *fields: str) -> None:
    for field in fields:
        value = getattr(query, field)
        if value is not None:
            identifiers.check(value, field=to_camel(field))


def _choice(kind: type[E], value: str, field: str | None = None) -> E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        name = field or to_camel(kind.__name__[0].lower() + kind.__name__[1:])
        raise InvalidCommand(f"{name} must be one of {choices}, not {value[:40]!r}") from None


def _moment(text: str | None, field: str) -> datetime | None:
    return None if text is None else timestamps.parse(text, field=field)
