"""Commands of the read model: project, rebuild, verify, lag."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """The projection issue adds its commands here."""
