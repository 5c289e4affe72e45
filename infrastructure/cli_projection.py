"""Commands of the read model: project, rebuild, verify, lag, wait-projection.

`project`, `rebuild` and `verify` show progress on standard error as `export` and `import` do
(infrastructure/cli_audit.py): when it is a terminal, unless `--no-progress`; in a log or a
pipe only when `--progress` asks for it, so that standard error stays JSON there.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from infrastructure import readmodel
from infrastructure.application import Ledger
from infrastructure.output import write_json
from infrastructure.progress import QUIET_BELOW, Progress
from projections.projector import ProjectionError
from projections.verify import verify

EXIT_OK, EXIT_FAILED = 0, 1

MAX_BATCH_SIZE = 10_000
"""Events a transaction at most: a batch is held in memory whole and written under one lock."""
MAX_POSITION = 2**63 - 1
"""The largest position a log can hold (a signed 64-bit integer on both backends)."""
MAX_TIMEOUT = 86_400
"""A day: longer than any wait worth a command (`inf`, `1e999` and `nan` would never end)."""
_BATCH_HELP = f"events a transaction, 1 to {MAX_BATCH_SIZE:,}; 500 by default"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    project = commands.add_parser("project", help="catch the workflow_runs read model up")
    project.add_argument("--follow", action="store_true", help="keep following until Ctrl-C")
    project.add_argument(
        "--batch-size", type=_batch_size, default=500, metavar="N", help=_BATCH_HELP
    )
    project.add_argument(
        "--dead-letters",
        action="store_true",
        help="set aside an event that cannot be applied (recorded, shown by lag) and go on",
    )
    _progress_option(project)
    project.set_defaults(handler=_project)

    rebuild = commands.add_parser("rebuild", help="rebuild the read model from the first event")
    rebuild.add_argument(
        "--batch-size", type=_batch_size, default=500, metavar="N", help=_BATCH_HELP
    )
    rebuild.add_argument(
        "--dead-letters", action="store_true", help="set aside events that cannot be applied"
    )
    _progress_option(rebuild)
    rebuild.set_defaults(handler=_rebuild)

    check = commands.add_parser("verify", help="compare every row with its run's replay")
    _progress_option(check)
    check.set_defaults(handler=_verify)

    behind = commands.add_parser("lag", help="how far behind the read model is, as JSON")
    behind.set_defaults(handler=_lag)

    wait = commands.add_parser(
        "wait-projection", help="wait until the read model has applied a position"
    )
    wait.add_argument("--position", type=_position, help="default: the latest event now recorded")
    wait.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        metavar="SECONDS",
        help=f"0 to {MAX_TIMEOUT:,}; 10 by default",
    )
    wait.set_defaults(handler=_wait)


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on standard error (by default only when it is a terminal; when asked, "
        f"also in a log: a line a quarter, for {QUIET_BELOW:,} or more)",
    )


def _progress(
    label: str, total: int | None, args: argparse.Namespace, unit: str = "events"
) -> Progress:
    """Progress wanted as the option says; when it says nothing, on a terminal only."""
    wanted = sys.stderr.isatty() if args.progress is None else args.progress
    return Progress(label, total, unit=unit, wanted=wanted)


def _whole_number(flag: str, low: int, high: int) -> Callable[[str], int]:
    """The parser of an option that takes a whole number from `low` to `high`: anything else
    is refused (`invalid`, exit 2) before the ledger is opened, by a message that names the
    range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a whole number from {low:,} to {high:,}, not {text!r}"
            )
        return value

    return parse


_batch_size = _whole_number("--batch-size", 1, MAX_BATCH_SIZE)
_position = _whole_number("--position", 0, MAX_POSITION)


def _timeout(text: str) -> float:
    """Seconds, finite and not negative: a wait of `nan` or `inf` seconds never ends, and a
    negative one would end at once as a timeout rather than be refused."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_TIMEOUT:  # NaN fails every comparison
        raise argparse.ArgumentTypeError(
            f"--timeout must be a number of seconds from 0 to {MAX_TIMEOUT:,}, not {text!r}"
        )
    return seconds


def _project(ledger: Ledger, args: argparse.Namespace) -> int:
    view = readmodel.open_view(ledger)
    total = None if args.follow else (ledger.recorder.max_notification_id() or 0) - view.position()
    with _progress("projecting", total, args) as progress, _stopped_by_signals() as stop:
        runner = readmodel.projector(
            ledger,
            view,
            batch_size=args.batch_size,
            dead_letters=args.dead_letters,
            on_batch=progress.advance,
        )
        try:
            applied = runner.run(follow=args.follow, stop=stop)
        except ProjectionError as error:
            return _stopped(str(error))
    write_json(sys.stdout, {"applied": applied, **readmodel.lag(ledger, view).to_json_dict()})
    return EXIT_OK


def _stopped(message: str) -> int:
    """The projection stopped at an event it cannot apply: exit 1, the reason on stderr."""
    write_json(sys.stderr, {"error": {"code": "projection_stopped", "message": message}})
    return EXIT_FAILED


def _rebuild(ledger: Ledger, args: argparse.Namespace) -> int:
    live = readmodel.open_view(ledger)
    total = ledger.recorder.max_notification_id() or 0
    with _progress("rebuilding", total, args) as progress:
        try:
            position = readmodel.rebuild(
                ledger,
                live,
                batch_size=args.batch_size,
                dead_letters=args.dead_letters,
                on_batch=progress.advance,
            )
        except ProjectionError as error:
            return _stopped(f"{error}; the live read model is unchanged")
    write_json(sys.stdout, {"rebuilt": True, "position": position})
    return EXIT_OK


def _verify(ledger: Ledger, args: argparse.Namespace) -> int:
    view = readmodel.open_view(ledger)
    disagreements = 0
    with _progress("verifying", None, args, unit="runs") as progress:
        for disagreement in verify(
            view, ledger.mapper, view.event_run_ids, on_run=progress.advance
        ):
            disagreements += 1
            write_json(sys.stdout, disagreement.to_json_dict())
        runs = progress.done
    write_json(
        sys.stdout,
        {"runs": runs, "position": view.position(), "disagreements": disagreements},
    )
    return EXIT_FAILED if disagreements else EXIT_OK


def _lag(ledger: Ledger, args: argparse.Namespace) -> int:
    write_json(sys.stdout, readmodel.lag(ledger, readmodel.open_view(ledger)).to_json_dict())
    return EXIT_OK


def _wait(ledger: Ledger, args: argparse.Namespace) -> int:
    view = readmodel.open_view(ledger)
    position = args.position
    if position is None:
        position = ledger.recorder.max_notification_id() or 0
    try:
        view.wait_for(position, timeout=args.timeout)
    except TimeoutError:
        message = f"the read model did not reach position {position} in {args.timeout} s"
        write_json(sys.stderr, {"error": {"code": "timeout", "message": message}})
        return EXIT_FAILED
    write_json(sys.stdout, readmodel.lag(ledger, view).to_json_dict())
    return EXIT_OK


@contextmanager
def _stopped_by_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM, so that work stops at a transaction boundary."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
