"""uvicorn on a socket the service binds itself, so that it can say where it listens (port 0
picks a free one) before it serves."""

from __future__ import annotations

import signal
import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI

GRACEFUL_SECONDS = 10


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that say TCP
    # (with it on, a response written in two parts waits 40 ms for a delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    app: FastAPI, sock: socket.socket, *, access_log: bool, stopping: threading.Event
) -> None:
    """Serves until SIGINT or SIGTERM, then sets `stopping`, finishes the requests in flight
    (bounded) and returns, so that the caller closes the ledger and the process exits 0.
    (uvicorn raises the signal again once it has shut down, to the handler it found: this
    one ignores it.)"""
    config = uvicorn.Config(
        app,
        access_log=access_log,
        log_level="info",
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
    )
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {stop: signal.signal(stop, _stopped) for stop in stops}
    try:
        with sock:
            _Server(config, stopping).run(sockets=[sock])
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


class _Server(uvicorn.Server):
    """uvicorn's server, which sets `stopping` as its shutdown begins: before it waits for
    the requests in flight, so that those that wait (a read with minPosition) stop waiting
    and answer, rather than outlast the graceful timeout and be cancelled."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stopping.set()
        await super().shutdown(sockets)


def _stopped(signum: int, frame: Any) -> None:
    """The signal has been handled already: uvicorn shut the service down."""
