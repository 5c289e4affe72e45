"""`runledger serve`: the ledger as an HTTP service."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """The service issue adds `serve` here."""
