"""How `apply` takes an interrupt (SIGINT) or a request to terminate (SIGTERM): as the end of
its input. It answers every line it has saved, in order, and exits 130 (143 for SIGTERM), so
that the answers are exactly those of the lines before the first one left unanswered, and the
rest of the input can be applied again from there.

An interrupt is held back while `apply` decides, saves and answers a group of lines, or deals
lines to workers: an answer half written, a line half sent to a worker, or an answer taken
but not yet written would break or shift every answer after it. It is raised where `apply`
waits (for input, for a worker's answer), where nothing is half done, or at the end of the
step. A second interrupt is not held back: `apply` stops at once, writing nothing more (its
last answer may be cut short, if its reader was not reading).

A signal ignored when the command started (`trap '' INT`, as a shell does for a command it
runs in the background) stays ignored. Workers ignore both: they stop at the end of their
input, which the process dealing to them closes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as an interrupt."""


def interruption(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _raise(signum: int, frame: FrameType | None) -> None:
    raise interruption(signum)


@contextmanager
def taken_as_interrupts(handler: Any = _raise) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` (by default: raised at once as an interruption;
    `signal.SIG_IGN` ignores them) until the block ends, unless they were ignored already.
    Signals reach only the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for number in _SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Held:
    """Interrupts held back outside `waiting()` blocks, raised at the next `check()` or wait."""

    def __init__(self) -> None:
        self._held: int | None = None
        self._waiting = False
        self.count = 0
        """Interrupts so far: from the second on, `apply` stops at once."""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self._waiting or self.count > 1:  # a second one is not held back
            self._held = None
            raise interruption(signum)
        self._held = signum

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A wait an interrupt may cut short: nothing is half done during it."""
        was, self._waiting = self._waiting, True
        try:
            self.check()  # after `_waiting`: one arriving in between is raised at once
            yield
        finally:
            self._waiting = was

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Bookkeeping, inside a wait (what the reader of the input does before it waits)."""
        was, self._waiting = self._waiting, False
        try:
            yield
        finally:
            self._waiting = was
        self.check()

    def check(self) -> None:
        """Raises an interrupt held back, once."""
        if self._held is not None:
            signum, self._held = self._held, None
            raise interruption(signum)
