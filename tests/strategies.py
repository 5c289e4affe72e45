"""Hypothesis strategies for the ledger's inputs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from domain import timestamps
from tests.builders import T0

identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)

json_text = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda d: Decimal(str(d)))
    | json_text
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=12,
)
"""JSON payloads within the contract's limits (no U+0000, shallow, finite numbers)."""

offsets_ms = st.integers(min_value=0, max_value=10 * 60 * 1000)
"""Gaps between events, in milliseconds (zero included: equal `at` is allowed)."""


def moment(ms: int) -> str:
    return timestamps.to_iso(T0 + timedelta(milliseconds=ms))
