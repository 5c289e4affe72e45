"""Commands for auditors: a run's history (and, with the audit issue, export and import)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infrastructure.application import Ledger
from infrastructure.output import write_json
from projections import history


def register(commands: argparse._SubParsersAction[Any]) -> None:
    events = commands.add_parser("history", help="print a run's events, oldest first")
    events.add_argument("run_id", metavar="RUN_ID")
    events.set_defaults(handler=_history)


def _history(ledger: Ledger, args: argparse.Namespace) -> int:
    for entry in history.entries(ledger.history(args.run_id)):
        write_json(sys.stdout, entry)
    return 0
