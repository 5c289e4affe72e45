"""The FastAPI application over one ledger: `create_app(ledger, settings)`."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from infrastructure.application import Ledger
from infrastructure.http import health, openapi, problems, reads, writes
from infrastructure.http.service import Service, Settings


def create_app(
    ledger: Ledger, settings: Settings, stopping: threading.Event | None = None
) -> FastAPI:
    """The service: its routes, its error handlers, its document; with the projection in a
    thread while it runs if `settings.with_projection`. The caller closes the ledger, and
    sets `stopping` when the server begins to shut down (server.serve does)."""
    service = Service(ledger, settings, stopping)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.with_projection:
            await run_in_threadpool(service.start_projection)
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    app = FastAPI(
        title="runledger",
        version=version("runledger"),
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service
    problems.install(app)
    for module in (writes, reads, health):
        app.include_router(module.router)
    openapi.install(app, secured=settings.tokens is not None)
    return app
