"""Commands for auditors: a run's history; export and import of the whole event history.

    history RUN_ID [--format json|table]
    export [--workspace-id W] [--since TS] [--progress | --no-progress]
    import FILE|- [--progress | --no-progress]

Progress goes to standard error, so that standard output stays for the JSON: a bar with
counts and rate, past `PROGRESS_FROM` events, when standard error is a terminal. Elsewhere
(a log, a pipe) it stays quiet unless `--progress` asks for it: then a line at each quarter
and one at the end, for work of thousands of events (infrastructure/progress.py).
`--no-progress` silences it everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from domain import identifiers, timestamps
from infrastructure import batch, export, import_lines, table
from infrastructure.application import Ledger
from infrastructure.importer import Importer
from infrastructure.output import write_json, write_text
from infrastructure.progress import Progress
from projections import history

PROGRESS_FROM = 5000
"""Below this many events, work is quick enough to need no progress unless asked."""

EXIT_BROKEN_PIPE = 141
"""As a shell reports a process ended by SIGPIPE: the reader went away (`export | head`)."""


def register(commands: argparse._SubParsersAction[Any]) -> None:
    events = commands.add_parser("history", help="print a run's events, oldest first")
    events.add_argument("run_id", metavar="RUN_ID")
    events.add_argument(
        "--format",
        choices=("json", "table"),
        default="json",
        help="json: one JSON object a line (the default); table: aligned, for a person",
    )
    events.set_defaults(handler=_history)

    dump = commands.add_parser("export", help="print every event as JSON lines, in order")
    dump.add_argument("--workspace-id", metavar="W", help="only the runs of workspace W")
    dump.add_argument(
        "--since", metavar="TS", help="only the events this ledger recorded at or after TS"
    )
    _progress_option(dump)
    dump.set_defaults(handler=_export)

    load = commands.add_parser("import", help="append the events of an export (FILE or -)")
    load.add_argument("file", metavar="FILE|-")
    _progress_option(load)
    load.set_defaults(handler=_import)


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"a progress bar on standard error (by default: past {PROGRESS_FROM:,} events, "
        "when standard error is a terminal)",
    )


# history ----------------------------------------------------------------------------------

_COMMON = {"runId", "version", "event", "eventType", "statusBefore", "statusAfter", "at"}
_COMMON |= {"recordedAt", "firstRecordedAt", "actor", "reason", "idempotencyKey"}


def _history(ledger: Ledger, args: argparse.Namespace) -> int:
    run_id = identifiers.check(args.run_id, field="RUN_ID")
    entries = list(history.entries(ledger.history(run_id)))
    if args.format == "table":
        write_text(sys.stdout, "\n".join(_table(entries)))
        return 0
    for entry in entries:
        write_json(sys.stdout, entry)
    return 0


def _table(entries: list[dict[str, Any]]) -> list[str]:
    imported = any("firstRecordedAt" in entry for entry in entries)
    headers = ["VERSION", "EVENT", "STATUS", "AT", "RECORDED AT"]
    headers += ["FIRST RECORDED AT"] * imported + ["ACTOR", "REASON", "KEY", "DETAILS"]
    rows = []
    for entry in entries:
        before = entry["statusBefore"]
        status = f"{before} -> " if before else "-> "
        row = [str(entry["version"]), entry["event"], status + entry["statusAfter"]]
        row += [entry["at"], entry["recordedAt"]]
        row += [entry.get("firstRecordedAt", table.NULL)] * imported
        row += [table.cell(entry["actor"]), table.cell(entry["reason"], limit=50)]
        row += [table.cell(entry["idempotencyKey"]), _details(entry)]
        rows.append(row)
    return table.render(headers, rows)


def _details(entry: dict[str, Any]) -> str:
    fields = {key: value for key, value in entry.items() if key not in _COMMON}
    shown = [
        f"{key}={table.cell(value, limit=60)}"
        for key, value in fields.items()
        if value is not None or key in ("output", "input")
    ]
    return "  ".join(shown)


# export and import ------------------------------------------------------------------------


def _export(ledger: Ledger, args: argparse.Namespace) -> int:
    workspace_id = args.workspace_id
    if workspace_id is not None:
        identifiers.check(workspace_id, field="--workspace-id")
    since = None if args.since is None else timestamps.parse(args.since, field="--since")
    stop = export.last_position(ledger)
    sys.stdout.flush()
    with _Meter("export", stop, args.progress) as meter:
        try:
            export.export(
                ledger,
                sys.stdout.buffer,
                workspace_id=workspace_id,
                since=since,
                stop=stop,
                on_page=meter.advance,
            )
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
    return 0


def _import(ledger: Ledger, args: argparse.Namespace) -> int:
    wanted = _wants_progress(args.progress)
    total = _count_lines(args.file) if wanted and args.file != "-" else None
    with batch.open_input(args.file) as stream, _Meter("import", total, args.progress) as meter:
        importer = Importer(ledger, on_event=meter.advance)
        summary = importer.run(import_lines.read_lines(stream))
    write_json(sys.stdout, summary.to_json_dict())
    return 0


def _count_lines(name: str) -> int | None:
    """The number of lines of a regular file, for the progress bar's total."""
    try:
        with open(name, "rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    except OSError:
        return None  # the import itself says why it cannot read the file


def _wants_progress(option: bool | None) -> bool:
    return sys.stderr.isatty() if option is None else option


class _Meter:
    """Progress on standard error, shown once past PROGRESS_FROM events (or from the first
    when asked for), silent when not wanted."""

    def __init__(self, label: str, total: int | None, option: bool | None) -> None:
        self.label, self.total = label, total
        self.wanted = _wants_progress(option)
        self.threshold = 0 if option else PROGRESS_FROM
        self.done = 0
        self.started = time.perf_counter()
        self.bar: Progress | None = None

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.advance(count)
        elif self.wanted and self.done > self.threshold:
            self.bar = Progress(self.label, self.total)
            self.bar.started = self.started
            self.bar.advance(self.done)

    def __enter__(self) -> _Meter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
