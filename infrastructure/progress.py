"""Progress for long work, on standard error: a bar with counts and rate on a terminal,
a line at each quarter otherwise (so logs stay short); nothing for short work, nor where it
is not wanted (the commands' `--no-progress`, or by default a log that did not ask for it)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Self

QUIET_BELOW = 5_000
"""Below this many items, work that is not on a terminal goes without progress lines."""


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "events",
        stream: IO[str] | None = None,
        wanted: bool = True,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.wanted = wanted
        self.done = 0
        self.started = time.perf_counter()
        self._shown_at = 0.0
        self._quarter = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def worth_showing(self) -> bool:
        """Long work only: more than half a second on a terminal, thousands of items in a log;
        and only if wanted (counting goes on all the same)."""
        if not self.wanted:
            return False
        if self.live:
            return self.elapsed >= 0.5
        return (self.total or self.done) >= QUIET_BELOW

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.worth_showing:
            return
        now = time.perf_counter()
        if self.live and now - self._shown_at >= 0.1:
            self._shown_at = now
            self.stream.write("\r" + self._line())
            self.stream.flush()
        elif not self.live and self.total:
            quarter = 4 * self.done // self.total
            if quarter > self._quarter and quarter < 4:
                self._quarter = quarter
                self.stream.write(self._line() + "\n")

    def _line(self) -> str:
        rate = f"{self.rate:,.0f} {self.unit}/s"
        if not self.total:
            return f"{self.label}: {self.done:,} {self.unit}  {rate}"
        share = min(self.done / self.total, 1.0)
        bar = "#" * int(share * 30)
        return (
            f"{self.label} [{bar:<30}] {self.done:,}/{self.total:,} {self.unit} "
            f"{share:4.0%}  {rate}"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.worth_showing and kind is None:  # a failure speaks for itself
            end = f"  {self.elapsed:.1f}s\n"
            self.stream.write(("\r" if self.live else "") + self._line() + end)
            self.stream.flush()
