"""Dashboard commands over the read model: runs, stats, tree, stuck."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """The dashboard issue adds its commands here."""
