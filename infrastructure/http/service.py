"""What every request reaches: the ledger, the read model (opened once, on first use), the
settings, and the FastAPI dependencies that hand them to the routes."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, cast

from eventsourcing.persistence import WaitInterruptedError
from fastapi import Depends, Path, Request

from domain import identifiers
from domain.errors import InvalidCommand
from infrastructure import readmodel
from infrastructure.application import Ledger
from infrastructure.dashboard import open_queries
from infrastructure.http.auth import Access, Tokens, authenticate
from infrastructure.http.problems import ServiceProblem
from infrastructure.http.projection import ProjectionBeside
from projections.queries import RunQueries
from projections.readmodel import RunsView

IDENTIFIER_PATTERN = f"^{identifiers.IDENTIFIER.pattern}$"


@dataclass(frozen=True)
class Settings:
    tokens: Tokens | None
    """None: development mode, no authentication (`serve --dev`)."""
    with_projection: bool = False
    """The projection follows the log in the service's process (`serve --with-projection`)."""
    read_your_writes_timeout: float = 5.0
    """How long a read with `minPosition` waits for the read model, in seconds."""


class Service:
    def __init__(
        self, ledger: Ledger, settings: Settings, stopping: threading.Event | None = None
    ) -> None:
        self.ledger, self.settings = ledger, settings
        self.stopping = threading.Event() if stopping is None else stopping
        """Set once the server begins to shut down (server.serve): a read waiting for the
        read model stops waiting, so that the drain ends before uvicorn's graceful timeout
        cancels it with a traceback."""
        self._lock = threading.Lock()
        self._view: RunsView | None = None
        self._queries: RunQueries | None = None
        self.projection: ProjectionBeside | None = None

    def view(self) -> RunsView:
        """The `workflow_runs` read model, its tables created if missing (once a process)."""
        with self._lock:
            if self._view is None:
                self._view = readmodel.open_view(self.ledger)
            return self._view

    def queries(self) -> RunQueries:
        """The dashboard queries, exactly those of `runledger runs|stats|tree`."""
        self.view()  # first: the queries then find the tables in place
        with self._lock:
            if self._queries is None:
                self._queries = open_queries(self.ledger)
            return self._queries

    def position(self) -> int:
        """The latest event recorded: what a write gives back as `Ledger-Position`."""
        return self.ledger.recorder.max_notification_id() or 0

    def read_your_writes(self, min_position: int | None) -> None:
        """Waits (bounded) until the read model has applied `min_position`; 503 if it has not."""
        if not min_position:
            return
        view = self.view()
        if view.position() >= min_position:
            return
        head = self.position()
        if min_position > head:
            raise InvalidCommand(
                f"minPosition {min_position} is past the latest event ({head}); pass the "
                "Ledger-Position header that a write gave back"
            )
        timeout = self.settings.read_your_writes_timeout
        wait = view.wait_for if self.projection is None else self.projection.wait_for
        try:
            wait(min_position, timeout, self.stopping)
        except TimeoutError:
            raise ServiceProblem(
                "read_model_behind",
                f"the read model is at position {view.position()} and did not reach "
                f"{min_position} within {timeout:g} s; is the projection running "
                "(`runledger serve --with-projection` or `runledger project --follow`)?",
                {"Retry-After": "1"},
            ) from None
        except WaitInterruptedError:
            raise ServiceProblem(
                "read_model_behind",
                f"the service is stopping; the read model is at position {view.position()}, "
                f"not yet {min_position}: ask again",
                {"Retry-After": "1"},
            ) from None

    def start_projection(self) -> None:
        self.projection = ProjectionBeside(self.ledger, self.view())
        self.projection.start()

    def close(self) -> None:
        """Stops the projection, then closes the read model's own connection (PostgreSQL's
        listener); the ledger is the caller's to close."""
        if self.projection is not None:
            self.projection.stop()
        close = getattr(self._view, "close", None)
        if callable(close):
            close()


# FastAPI dependencies ----------------------------------------------------------------------


def service_of(request: Request) -> Service:
    return cast(Service, request.app.state.service)


async def _service(request: Request) -> Service:
    return service_of(request)


async def _access(request: Request) -> Access:
    tokens = service_of(request).settings.tokens
    return authenticate(tokens, request.headers.get("authorization"))


async def _workspace(
    request: Request,
    workspace_id: Annotated[
        str,
        Path(
            alias="workspaceId",
            description="The workspace; a token may use its own only.",
            json_schema_extra={"pattern": IDENTIFIER_PATTERN},
        ),
    ],
) -> str:
    (await _access(request)).check(workspace_id)
    return identifiers.check(workspace_id, field="workspaceId")


def run_id_checked(run_id: str) -> str:
    return identifiers.check(run_id, field="runId")


ServiceDep = Annotated[Service, Depends(_service)]
AccessDep = Annotated[Access, Depends(_access)]
WorkspaceDep = Annotated[str, Depends(_workspace)]
"""The workspace of the path, once the token may use it (401, 403) and it is well formed."""
RunIdPath = Annotated[
    str,
    Path(
        alias="runId",
        description="The run.",
        json_schema_extra={"pattern": IDENTIFIER_PATTERN},
    ),
]
