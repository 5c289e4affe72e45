"""`runledger serve`: the ledger as an HTTP service (infrastructure/http/).

    runledger [--db URL] serve [--host 127.0.0.1] [--port 8080] [--with-projection]
                               [--tokens FILE | --dev] [--access-log]

Tokens come from `--tokens FILE`, else the RUNLEDGER_TOKENS variable (infrastructure/http/
auth.py tells the format; `python -m infrastructure.http.auth WORKSPACE` makes one). Without
tokens the service refuses to start, unless `--dev` asks for no authentication at all, which
it then announces on standard error. Standard output gets one JSON line once the socket
listens: `{"listening":"http://127.0.0.1:8080"}`.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from domain.errors import InvalidCommand
from infrastructure.application import Ledger
from infrastructure.output import write_json

if TYPE_CHECKING:
    from infrastructure.http.service import Settings

EXIT_OK = 0
DEFAULT_PORT = 8080
MAX_READ_YOUR_WRITES_TIMEOUT = 86_400
"""A day, as `wait-projection --timeout`: longer than any read worth waiting for."""


def register(commands: argparse._SubParsersAction[Any]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the ledger over HTTP (the API of /openapi.json)",
        description="Serve the ledger over HTTP until SIGINT or SIGTERM.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}; 0: any free"
    )
    serve.add_argument(
        "--with-projection",
        action="store_true",
        help="keep the workflow_runs read model up to date in this process (else run "
        "`runledger project --follow` beside it)",
    )
    serve.add_argument(
        "--tokens",
        metavar="FILE",
        help="lines 'sha256:<hex of the token's SHA-256> WORKSPACE_ID' (default: the "
        "RUNLEDGER_TOKENS variable, same entries, comma or newline separated)",
    )
    serve.add_argument(
        "--dev", action="store_true", help="development only: no authentication at all"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--read-your-writes-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a read with minPosition waits for the read model (default 5)",
    )
    serve.set_defaults(handler=_serve)


def _serve(ledger: Ledger, args: argparse.Namespace) -> int:
    # Imported here: the other commands do not pay for loading the web stack.
    from infrastructure.http import server  # noqa: PLC0415
    from infrastructure.http.app import create_app  # noqa: PLC0415
    from infrastructure.http.auth import TOKENS_VARIABLE, Tokens  # noqa: PLC0415
    from infrastructure.http.service import Settings  # noqa: PLC0415

    if args.dev and (args.tokens is not None or TOKENS_VARIABLE in os.environ):
        raise InvalidCommand(
            f"--dev serves without authentication: give it alone, without --tokens or "
            f"{TOKENS_VARIABLE}"
        )
    tokens = None if args.dev else Tokens.load(args.tokens, os.environ)
    if tokens is None and not args.dev:
        raise InvalidCommand(
            f"serve needs tokens: --tokens FILE or {TOKENS_VARIABLE} (entries 'sha256:<hex> "
            "WORKSPACE_ID'); or --dev, on a developer's machine, for no authentication at all"
        )
    # NaN compares false to everything, so `<= 0` alone let it (and inf, and 1e300) through
    # to a read with minPosition that would then never answer.
    timeout = args.read_your_writes_timeout
    if not 0 <= args.port <= 65535 or not 0 < timeout <= MAX_READ_YOUR_WRITES_TIMEOUT:
        raise InvalidCommand(
            "--port must be 0 to 65535 and --read-your-writes-timeout a number of seconds "
            f"more than 0 and at most {MAX_READ_YOUR_WRITES_TIMEOUT:,}"
        )
    settings = Settings(
        tokens,
        with_projection=args.with_projection,
        read_your_writes_timeout=args.read_your_writes_timeout,
    )
    stopping = threading.Event()
    app = create_app(ledger, settings, stopping)
    sock = server.listen(args.host, args.port)
    url = server.url_of(sock)
    _announce(ledger, settings, url)
    write_json(sys.stdout, {"listening": url})
    server.serve(app, sock, access_log=args.access_log, stopping=stopping)
    return EXIT_OK


def _announce(ledger: Ledger, settings: Settings, url: str) -> None:
    if settings.tokens is None:
        print(
            "runledger: WARNING: DEVELOPMENT MODE, NO AUTHENTICATION: anyone who can reach "
            f"{url} may read and write every workspace. Outside a developer's machine, serve "
            "with --tokens FILE (or RUNLEDGER_TOKENS) instead of --dev.",
            file=sys.stderr,
        )
        access = "no authentication (--dev)"
    else:
        access = f"bearer tokens for {len(settings.tokens.workspaces)} workspace(s)"
    projection = (
        "the projection runs beside the service"
        if settings.with_projection
        else "the read model is kept by `runledger project --follow` (not in this process)"
    )
    print(
        f"runledger: serving {url} on {ledger.database.display}; {access}; {projection}",
        file=sys.stderr,
        flush=True,
    )
