"""Group commit: commands that arrive together from many threads share one transaction.

The first caller to arrive leads: it takes its own command and every command queued at that
moment (up to `max_group`), has them decided and saved at once, gives each caller its own
answer, and hands the lead on to the oldest caller still waiting, whose command leaves the
queue with the lead. A lone caller leads at once and waits for nobody; under load, the
callers that queue while a commit is in flight share the next. A caller interrupted while it
waits (KeyboardInterrupt) leaves the queue, or hands on the lead it was handed; a leader
interrupted while it gathers hands the lead on, its command not run; one interrupted while
its group is saved raises the interruption itself, and its callers get `GroupInterrupted`.

(A group's callers are woken all at once. Woken one after the other, each waking the next,
eight writers and nothing else made 7,276-8,011 commands a second on PostgreSQL against
7,037-7,401, but the HTTP service's write-heavy mix (`scripts/bench_http.py`) lost 3% of its
requests a second and its p99 grew 6%: 640 against 659 a second, 56.5 against 53.5 ms, means
of six alternating runs. A caller that waits for the GIL to wake the next holds up the rest
of its group.)

(The next group is not decided while the current one is being written: with callers that
wait for their answer before sending more, that only made groups smaller. Measured with two
groups in flight, eight writers made groups of four, and 15-25% fewer commands a second.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

GATHER_SECONDS = 0.0005
"""How long a leader waits for as many callers as the last group had, when it had several:
callers just answered send their next command soon, and a group of one would otherwise
alternate with groups of all the others. A lone caller never waits."""

C = TypeVar("C")
R = TypeVar("R")


class GroupInterrupted(RuntimeError):
    """The answer to the callers of a group whose leader's thread was interrupted (by
    KeyboardInterrupt, SystemExit) while the group was saved: the interruption is the
    leader's own, and raised in its thread only."""


def _baton() -> threading.Lock:
    """A lock made held, to wake one waiting thread: it waits in `acquire` until another
    thread `release`s it. An Event (a Condition, a lock and Python code on each side) cost
    eight writers on PostgreSQL about a tenth of their rate: 9,550-9,876 commands a second
    against 10,527-10,961 with batons, in alternating runs."""
    baton = threading.Lock()
    baton.acquire()
    return baton


@dataclass(eq=False)
class _Request(Generic[C, R]):
    command: C
    wake: threading.Lock | None = None
    """A baton, made only for a caller that waits (a caller that leads at once has none)."""
    answer: R | BaseException | None = None
    answered: bool = False
    leads: bool = False
    """It leads: at once, or the lead was handed on to it (its command taken off the queue)."""

    def result(self) -> R:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[return-value]


class GroupCommit(Generic[C, R]):
    def __init__(self, execute_many: Callable[[Sequence[C]], Sequence[R]], max_group: int) -> None:
        self._execute_many = execute_many
        self._max_group = max_group
        self._lock = threading.Lock()
        self._gathered: threading.Lock | None = None  # a baton the gathering leader waits on
        self._queue: list[_Request[C, R]] = []  # waiting callers, oldest first
        self._leading = False
        self._last = 1  # the size of the last group

    def submit(self, command: C) -> R:
        request: _Request[C, R] = _Request(command)
        try:
            with self._lock:
                if not self._leading:
                    self._leading = request.leads = True
                else:
                    request.wake = _baton()
                    self._queue.append(request)
                    if self._gathered is not None and len(self._queue) + 1 >= self._last:
                        self._gathered.release()
                        self._gathered = None
            if request.wake is not None:
                request.wake.acquire()
        except BaseException:  # interrupted before it led or was answered
            self._abandon(request)
            raise
        if request.answered:
            return request.result()
        # it leads: at once, or the lead was handed on to it, its command taken off the queue
        self._lead(request)
        return request.result()

    def _lead(self, own: _Request[C, R]) -> None:
        """Decides and saves `own` with the commands queued, then hands the lead on."""
        gathered = None
        with self._lock:
            if len(self._queue) + 1 < self._last:  # callers just answered are coming back
                gathered = self._gathered = _baton()
            else:
                taken = self._take()
        if gathered is not None:
            try:
                gathered.acquire(timeout=GATHER_SECONDS)
            except BaseException:  # interrupted: its own command is not run, the lead goes on
                with self._lock:
                    self._gathered = None
                    self._hand_on()
                raise
            with self._lock:
                self._gathered = None
                taken = self._take()
        group = [own, *taken]
        try:
            answers: Sequence[R | BaseException] = self._execute_many([r.command for r in group])
        except Exception as error:  # every caller of the group hears of it
            answers = [error] * len(group)
        except BaseException as error:  # the leader's own thread was interrupted
            others = GroupInterrupted(
                f"the transaction of this command's group was interrupted "
                f"({type(error).__name__}); it may or may not have been saved"
            )
            answers = [error, *[others] * len(taken)]
        for request, answer in zip(group, answers, strict=True):
            request.answer, request.answered = answer, True
        with self._lock:
            self._hand_on()
        for request in taken:
            request.wake.release()  # type: ignore[union-attr]

    def _take(self) -> list[_Request[C, R]]:
        """The callers queued that join the leader's group (the lock is held)."""
        taken = self._queue[: self._max_group - 1]
        del self._queue[: self._max_group - 1]
        self._last = len(taken) + 1
        return taken

    def _hand_on(self) -> None:
        """Hands the lead to the oldest waiter, its command its own (the lock is held)."""
        if self._queue:
            following = self._queue.pop(0)
            following.leads = True
            following.wake.release()  # type: ignore[union-attr]
        else:
            self._leading = False

    def _abandon(self, request: _Request[C, R]) -> None:
        """A caller interrupted before it led or was answered: it leaves the queue, or hands
        the lead on. (Taken into a group, its command is run and its answer left unread.)"""
        with self._lock:
            if request in self._queue:
                self._queue.remove(request)
            elif request.leads:
                self._hand_on()
