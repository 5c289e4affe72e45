"""The `runledger` command: the contract's last section (shared/design/lifecycle.md).

Standard output carries JSON. A rejection prints {"error":{"code","message"}} on standard
error and exits 2; anything unexpected exits 1 with a message, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from typing import IO, Any, NoReturn, Protocol

from eventsourcing.persistence import PersistenceError

from domain import identifiers, payload, timestamps
from domain.errors import InvalidCommand, RunLedgerError
from domain.status import Command
from infrastructure import (
    apply_workers,
    batch,
    cli_audit,
    cli_dashboard,
    cli_projection,
    cli_service,
    interrupts,
)
from infrastructure.application import Ledger, Pipeline
from infrastructure.decisions import Outcome
from infrastructure.output import reject, write_json, write_lines
from infrastructure.settings import database_url, parse_database_url
from projections.fold import fold, to_extended, to_view, until, view_text

EXIT_OK, EXIT_UNEXPECTED, EXIT_REJECTED = 0, 1, 2
EXIT_BROKEN_PIPE = 141
"""As a shell reports a process ended by SIGPIPE."""

Handler = Callable[[Ledger, argparse.Namespace], int]
"""What a command runs: given the ledger and the parsed arguments, returns the exit status."""


class Extension(Protocol):
    """A module that adds commands: `register(commands)` adds sub-parsers whose defaults set
    `handler` to a Handler. Each issue's commands live in a module of their own."""

    def register(self, commands: argparse._SubParsersAction[Any]) -> None: ...


EXTENSIONS: list[Extension] = [cli_audit, cli_projection, cli_dashboard, cli_service]

# The options of each command, as (flag, contract field, parse the text or None).
_RUN_OPTIONS = [("--at", "at"), ("--actor", "actor"), ("--reason", "reason")]
_RUN_OPTIONS += [("--idempotency-key", "idempotencyKey")]
_EXTRA_OPTIONS: dict[Command, list[tuple[str, str]]] = {
    Command.COMPLETE: [("--output", "output")],
    Command.FAIL: [("--error", "error")],
    Command.LINK_CF_WORKFLOW: [("--cf-workflow-id", "cfWorkflowId")],
}
_CREATE_OPTIONS = [
    ("--run-id", "runId"),
    ("--workspace-id", "workspaceId"),
    ("--subject-id", "subjectId"),
    ("--user-id", "userId"),
    ("--parent-run-id", "parentRunId"),
    ("--mode", "mode"),
    ("--triggered-by", "triggeredBy"),
    ("--input", "input"),
    ("--cf-workflow-id", "cfWorkflowId"),
    ("--at", "at"),
    ("--idempotency-key", "idempotencyKey"),
]
_JSON_FIELDS = {"input", "output"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        reject(InvalidCommand(f"{self.prog}: {message} (see {self.prog} --help)"))
        raise SystemExit(EXIT_REJECTED)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="runledger", description="An event-sourced ledger of workflow runs.")
    parser.add_argument("--db", metavar="URL", help="sqlite:///FILE or postgresql://...")
    commands = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    create = commands.add_parser("create", help="record a new run (pending)")
    for flag, field in _CREATE_OPTIONS:
        create.add_argument(flag, dest=field, metavar=field)
    create.set_defaults(handler=_command_handler(Command.CREATE))

    for command in Command:
        if command is Command.CREATE:
            continue
        sub = commands.add_parser(command.cli_name, help=f"{command.value} a run")
        sub.add_argument("runId", metavar="RUN_ID")
        for flag, field in _RUN_OPTIONS + _EXTRA_OPTIONS.get(command, []):
            sub.add_argument(flag, dest=field, metavar=field)
        sub.set_defaults(handler=_command_handler(command))

    apply = commands.add_parser("apply", help="apply JSON lines of commands from FILE or -")
    apply.add_argument("file", nargs="?", default="-", metavar="FILE|-")
    apply.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help=(
            "worker processes, lines dealt to them by run (1: none); by default one a CPU, "
            f"up to {apply_workers.MAX_WORKERS}, for a file of "
            f"{apply_workers.MIN_FILE_BYTES >> 20} MiB or more, else 1"
        ),
    )
    apply.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    apply.set_defaults(handler=_apply)

    show = commands.add_parser("show", help="print a run's view")
    show.add_argument("run_id", metavar="RUN_ID")
    moment = show.add_mutually_exclusive_group()
    moment.add_argument("--as-of", metavar="TS", help="as it was by the source's clock")
    moment.add_argument("--as-known-at", metavar="TS", help="as the ledger knew it then")
    show.add_argument("--extended", action="store_true", help="add timings and version")
    show.set_defaults(handler=_show)

    for extension in EXTENSIONS:
        extension.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = ""
    try:
        if sys.stdout is None:  # closed (`>&-`): the answer could not be given
            raise InvalidCommand("standard output is closed; runledger writes its answers there")
        url = database_url(args.db)
        with closing(Ledger(url)) as ledger:
            return int(args.handler(ledger, args))
    except (PersistenceError, sqlite3.DatabaseError) as error:  # the library lets some through
        message = f"the database {parse_database_url(url).display} failed: {error}"
        write_json(sys.stderr, {"error": {"code": "unavailable", "message": message}})
        return EXIT_UNEXPECTED
    except RunLedgerError as error:
        reject(error)
        return EXIT_REJECTED
    except KeyboardInterrupt as interruption:
        if isinstance(interruption, interrupts.Terminated):
            print("runledger: terminated", file=sys.stderr)
            return 143
        print("runledger: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`runledger history X | head -1`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as error:  # the last resort: a message, never a traceback
        message = f"{type(error).__name__}: {error}".strip()
        write_json(sys.stderr, {"error": {"code": "unexpected", "message": message}})
        return EXIT_UNEXPECTED


def _command_handler(command: Command) -> Handler:
    def handle(ledger: Ledger, args: argparse.Namespace) -> int:
        data: dict[str, Any] = {"command": command.value}
        for field, text in vars(args).items():
            if text is None or field in ("db", "verb", "handler"):
                continue
            data[field] = payload.loads(text, what=f"--{field}") if field in _JSON_FIELDS else text
        state = ledger.submit(data)
        write_lines(sys.stdout, [view_text(state)])
        return EXIT_OK

    return handle


APPLY_GC_THRESHOLD = 20_000
"""Allocations between two young-generation collections during `apply` (Python's default is
700): its groups allocate in bulk, and collecting that often took 16% of a 200,000-line run
here. Memory stays flat either way; the runs kept for the next group are what it holds."""

APPLY_SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the GIL before it must offer it (Python's default is 0.005), during
`apply`. On PostgreSQL the pipeline's writer thread wakes when the server answers, then
waited for the deciding thread to offer the GIL: with the default, a 500-event insert that
takes the server 2.3 ms took the writer 6.3, and 200,000 lines took 5.2-5.4 s; with this,
4.4-4.6 s."""


_MAX_WORKERS_OPTION = 32


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= _MAX_WORKERS_OPTION:
        raise argparse.ArgumentTypeError(
            f"--workers must be a whole number from 1 to {_MAX_WORKERS_OPTION}, not {text!r}"
        )
    return count


def _apply(ledger: Ledger, args: argparse.Namespace) -> int:
    """In this process, or over worker processes (infrastructure/apply_workers.py) when
    `--workers` asks for more than one or the input is a large file. An in-memory SQLite
    database is this process's alone, so it never has workers."""
    with batch.open_input(args.file) as stream:
        if args.as_worker:  # of another apply (apply_workers.Workers)
            return _apply_here(ledger, stream, worker=True)
        workers = args.workers or apply_workers.default_workers(stream.fileno())
        if workers > 1 and not ledger.in_memory:
            return _apply_in_workers(ledger, stream, workers)
        return _apply_here(ledger, stream)


def _apply_in_workers(ledger: Ledger, stream: IO[bytes], count: int) -> int:
    """Interrupted, the lines dealt are answered (`finish`); interrupted again, not."""
    workers = apply_workers.Workers(ledger.database.url, count, sys.stdout.buffer)
    try:
        with interrupts.taken_as_interrupts(workers.interrupts.handle):
            try:
                workers.apply(batch.line_groups(stream.fileno(), on_idle=workers.idle))
            except KeyboardInterrupt:
                if workers.interrupts.count == 1:  # the first: finish what was dealt
                    workers.finish()
                raise
    except apply_workers.WorkerFailed as failure:
        write_json(sys.stderr, failure.report())
        return EXIT_UNEXPECTED
    finally:
        workers.stop()
    return EXIT_REJECTED if workers.rejected else EXIT_OK


def _apply_here(ledger: Ledger, stream: IO[bytes], *, worker: bool = False) -> int:
    """Groups of lines go through a pipeline: a group is decided while the one before is
    saved, and answered once it is. Before waiting for more input, the group in flight
    lands, so that a slow pipe gets the answers to the lines it sent. An interrupt is held
    back but while it waits for input (infrastructure/interrupts.py): a group's answers
    are written whole. A worker of another `apply` ignores interrupts: that one stops it."""
    gc.set_threshold(APPLY_GC_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(APPLY_SWITCH_INTERVAL)
    held = interrupts.Held()
    with interrupts.taken_as_interrupts(signal.SIG_IGN if worker else held.handle):
        return _apply_groups(ledger, stream, held)


def _apply_groups(ledger: Ledger, stream: IO[bytes], held: interrupts.Held) -> int:
    rejected = 0
    pipeline: Pipeline[list[batch.Parsed]] = Pipeline(ledger)

    def write(done: list[tuple[list[batch.Parsed], list[Outcome]]]) -> None:
        nonlocal rejected
        for parsed, executed in done:
            outcomes = batch.merged(parsed, executed)
            rejected += sum(isinstance(outcome, RunLedgerError) for outcome in outcomes)
            write_lines(sys.stdout, map(batch.answer, outcomes))  # a group's in one write

    def idle() -> None:
        with held.busy():
            write(pipeline.flush())

    try:
        groups = batch.line_groups(stream.fileno(), on_idle=idle)
        first = True
        while True:
            with held.waiting():
                group = next(groups, None)
            if group is None:
                break
            parsed = batch.parse(group, first=first)
            write(pipeline.push(parsed, batch.accepted(parsed)))
            first = False
            held.check()
        write(pipeline.flush())
        held.check()
    except BaseException:
        if held.count < 2:  # interrupted again, it stops at once
            with suppress(Exception):  # what was saved before the failure is still answered
                write(pipeline.flush())
        raise
    finally:
        pipeline.close()
    return EXIT_REJECTED if rejected else EXIT_OK


def _show(ledger: Ledger, args: argparse.Namespace) -> int:
    events = ledger.history(identifiers.check(args.run_id, field="RUN_ID"))
    if args.as_of is not None:
        moment = timestamps.parse(args.as_of, field="--as-of")
        events = until(args.run_id, events, moment)
    elif args.as_known_at is not None:
        moment = timestamps.parse(args.as_known_at, field="--as-known-at")
        events = until(args.run_id, events, moment, known=True)
    state = fold(events)
    view = to_extended(state) if args.extended else to_view(state)
    write_json(sys.stdout, view.to_json_dict())
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
