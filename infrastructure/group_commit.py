"""Group commit: commands that arrive together from many threads share one transaction.

The first caller to arrive leads: it takes every command queued at that moment (up to
`max_group`), has them decided and saved at once, gives each caller its own answer, and
hands the lead on to the oldest caller still waiting. A lone caller leads at once and waits
for nobody; under load, the callers that queue while a commit is in flight share the next.
(The next group is not decided while the current one is being written: with callers that
wait for their answer before sending more, that would only make groups smaller.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

C = TypeVar("C")
R = TypeVar("R")


@dataclass
class _Request(Generic[C, R]):
    command: C
    wake: threading.Event = field(default_factory=threading.Event)
    answer: R | BaseException | None = None
    answered: bool = False

    def result(self) -> R:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[return-value]


class GroupCommit(Generic[C, R]):
    def __init__(self, execute_many: Callable[[Sequence[C]], Sequence[R]], max_group: int) -> None:
        self._execute_many = execute_many
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Request[C, R]] = []
        self._leading = False

    def submit(self, command: C) -> R:
        request: _Request[C, R] = _Request(command)
        with self._lock:
            self._queue.append(request)
            lead = not self._leading
            self._leading = True
        if not lead:
            request.wake.wait()
            if request.answered:
                return request.result()
        self._lead()
        return request.result()

    def _lead(self) -> None:
        with self._lock:
            group = self._queue[: self._max_group]
            del self._queue[: self._max_group]
        try:
            answers: Sequence[R | BaseException] = self._execute_many([r.command for r in group])
        except BaseException as error:  # every caller of the group hears of it
            answers = [error] * len(group)
        for request, answer in zip(group, answers, strict=True):
            request.answer, request.answered = answer, True
        with self._lock:
            if self._queue:
                self._queue[0].wake.set()  # the oldest waiting caller leads next
            else:
                self._leading = False
        for request in group:
            request.wake.set()
