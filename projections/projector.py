"""The projection: follows the application's event log in order and keeps `workflow_runs`.

Each batch of row changes is written with its tracking position in one transaction, so a
position is applied exactly once, whatever crashes when. A batch is whatever the log holds
past the position, up to `batch_size` events: hundreds a transaction while catching up, one
or a few when following live. An event that cannot be applied stops the projection with its
position, run and error; with `dead_letters` it is set aside in a table instead, and counted
by `lag`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventsourcing.persistence import (
    ApplicationRecorder,
    DataError,
    IntegrityError,
    Mapper,
    Notification,
    Tracking,
)

from domain.events import RunEvent
from projections.fold import RunState, step
from projections.readmodel import DeadLetter, RunsView, from_row

FOLLOW_POLL = 1.0
"""The longest a follower waits before it looks at the log again (notifications are hints)."""


class ProjectionError(Exception):
    def __init__(self, position: int, run_id: str, detail: str) -> None:
        super().__init__(f"cannot apply the event at position {position} (run {run_id}): {detail}")
        self.position, self.run_id = position, run_id


@dataclass
class Projector:
    source: ApplicationRecorder
    mapper: Mapper[str]
    view: RunsView
    batch_size: int = 500
    dead_letters: bool = False
    cache_size: int = 200_000
    on_batch: Callable[[int], None] = lambda count: None
    _cache: dict[str, RunState] = field(default_factory=dict)
    _generation: int = 0

    def run(
        self,
        *,
        follow: bool = False,
        stop: threading.Event | None = None,
        until: int | None = None,
    ) -> int:
        """Applies the log past the view's position (up to `until`); returns how many events.

        With `follow`, goes on waiting for new events until `stop` is set. Stops only at
        transaction boundaries.
        """
        stop = stop or threading.Event()
        position, applied = self.view.position(), 0
        if self.view.generation() != self._generation:  # a rebuild swapped a new table in
            self._cache.clear()
            self._generation = self.view.generation()
        while not stop.is_set():
            notifications = self.source.select_notifications(
                start=position + 1, limit=self.batch_size, stop=until
            )
            if not notifications:
                if not follow:
                    break
                self.view.wait_for_news(FOLLOW_POLL)
                continue
            try:
                self._apply(notifications)
            except IntegrityError:
                # Another writer moved the position (a rebuild swapped a new table in, or a
                # second follower): start again from what the view says.
                self._cache.clear()
                position, self._generation = self.view.position(), self.view.generation()
                continue
            except DataError as refusal:
                self._apply_alone(notifications, refusal)
            position = notifications[-1].id
            applied += len(notifications)
            self.on_batch(len(notifications))
        return applied

    def _apply(self, notifications: Sequence[Notification]) -> None:
        dead: list[DeadLetter] = []
        events = self._decode(notifications, dead)
        first_versions: dict[str, int] = {}
        for _, event in events:
            first_versions.setdefault(event.originator_id, event.originator_version)
        # A run whose first event here is its creation has no row yet: no need to look.
        states, broken = self._load({run for run, v in first_versions.items() if v > 1})
        changed: dict[str, RunState] = {}
        previous: dict[str, RunState | None] = {}  # as the rows hold them: for the rollups
        for notification, event in events:
            run_id = event.originator_id
            try:
                if run_id in broken:
                    raise broken[run_id]
                previous.setdefault(run_id, states.get(run_id))
                state = self._step(states.get(run_id), event)
            except Exception as error:  # a bug or bad data: stop, or set it aside
                dead.append(self._poison(notification, run_id, type(event).__name__, error))
                continue
            states[run_id] = changed[run_id] = state
        self.view.write(
            list(changed.values()),
            self._tracking(notifications),
            dead,
            self._generation,
            previous={run_id: previous[run_id] for run_id in changed},
        )
        if len(self._cache) + len(changed) > self.cache_size:
            self._cache.clear()
        self._cache.update(changed)

    def _apply_alone(self, notifications: Sequence[Notification], refusal: DataError) -> None:
        """A batch the read model's database refused a value of (a number PostgreSQL's jsonb
        cannot hold, recorded before the ledger refused those), again one event at a time:
        only the event refused stops the projection, or is set aside."""
        if len(notifications) == 1:
            (notification,) = notifications
            run_id, kind = str(notification.originator_id), notification.topic
            dead = [self._poison(notification, run_id, kind, refusal)]
            self.view.write([], self._tracking(notifications), dead, self._generation, previous={})
            return
        for notification in notifications:
            try:
                self._apply([notification])
            except DataError as error:
                self._apply_alone([notification], error)

    def _decode(
        self, notifications: Iterable[Notification], dead: list[DeadLetter]
    ) -> list[tuple[Notification, RunEvent]]:
        events: list[tuple[Notification, RunEvent]] = []
        for notification in notifications:
            try:
                event = self.mapper.to_domain_event(notification)
                if not isinstance(event, RunEvent):
                    raise TypeError(f"{notification.topic} is not a run event")
            except Exception as error:
                run_id = str(notification.originator_id)
                dead.append(self._poison(notification, run_id, notification.topic, error))
                continue
            events.append((notification, event))
        return events

    def _load(self, run_ids: set[str]) -> tuple[dict[str, RunState], dict[str, Exception]]:
        """The runs' current states (from the cache, else their rows), and the runs whose row
        cannot be read back (a corrupted row)."""
        states = {run_id: self._cache[run_id] for run_id in run_ids if run_id in self._cache}
        broken: dict[str, Exception] = {}
        for run_id, row in self.view.rows(run_ids - states.keys()).items():
            try:
                states[run_id] = from_row(row)
            except Exception as error:
                broken[run_id] = ValueError(f"its row cannot be read: {error!r}")
        return states, broken

    @staticmethod
    def _step(state: RunState | None, event: RunEvent) -> RunState:
        expected = 1 if state is None else state.version + 1
        if state is not None and event.originator_version < expected:
            return state  # applied already
        if event.originator_version != expected:
            raise ValueError(f"version {event.originator_version} does not follow {expected - 1}")
        return step(state, event)

    def _poison(
        self, notification: Notification, run_id: str, kind: str, error: Exception
    ) -> DeadLetter:
        detail = f"{type(error).__name__}: {error}"
        if not self.dead_letters:
            raise ProjectionError(notification.id, run_id, f"{kind}: {detail}") from error
        return DeadLetter(notification.id, run_id, kind, detail, datetime.now(UTC))

    def _tracking(self, notifications: Sequence[Notification]) -> Tracking:
        return Tracking(self.view.application_name, notifications[-1].id)
