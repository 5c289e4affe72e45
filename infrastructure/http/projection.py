"""`runledger serve --with-projection`: the projection follows the log in a thread of the
service, exactly as `runledger project --follow` does in a process of its own.

A database that goes away is waited out (the projector starts again from its tracked
position); an event that cannot be applied stops the projection, as it stops `project`, and
`/readyz` says so. A read that waits for a position (`minPosition`) is woken by each batch
the projector applies, rather than polling the read model on a timer.
"""

from __future__ import annotations

import logging
import threading
import time

from eventsourcing.persistence import PersistenceError, WaitInterruptedError

from infrastructure import readmodel
from infrastructure.application import Ledger
from projections.projector import ProjectionError
from projections.readmodel import RunsView

log = logging.getLogger("runledger.projection")

RETRY_SECONDS = 2.0
STOP_SECONDS = 10.0
RECHECK_SECONDS = 0.25
"""A waiting read looks at the read model at least this often (another writer may move it)."""


class ProjectionBeside:
    def __init__(self, ledger: Ledger, view: RunsView) -> None:
        self._ledger, self._view = ledger, view
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="projection", daemon=True)
        self.failure: str | None = None
        """Why the projection stopped for good (an event it cannot apply)."""
        self._applied = threading.Condition()
        self._batches = 0

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops at a transaction boundary (the projector checks between batches)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_SECONDS)

    def wait_for(
        self, position: int, timeout: float, interrupt: threading.Event | None = None
    ) -> None:
        """Read-your-writes: returns once the read model has applied `position`; raises
        TimeoutError after `timeout` seconds, WaitInterruptedError once `interrupt` is set
        (as the view's own wait_for does)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._applied:
                seen = self._batches
            if self._view.position() >= position:
                return
            if interrupt is not None and interrupt.is_set():
                raise WaitInterruptedError(position)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(position)
            with self._applied:
                if self._batches == seen:  # no batch since the look: wait for the next
                    self._applied.wait(min(remaining, RECHECK_SECONDS))

    def _batch_applied(self, count: int) -> None:
        with self._applied:
            self._batches += 1
            self._applied.notify_all()

    def _follow(self) -> None:
        while not self._stop.is_set():
            runner = readmodel.projector(self._ledger, self._view, on_batch=self._batch_applied)
            try:
                runner.run(follow=True, stop=self._stop)
            except ProjectionError as error:
                self.failure = str(error)
                log.error("runledger: the projection stopped: %s", error)
                return
            except PersistenceError as error:
                log.warning("runledger: the projection waits for the database: %s", error)
                self._stop.wait(RETRY_SECONDS)
