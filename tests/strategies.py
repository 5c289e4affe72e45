"""Hypothesis strategies for the ledger's inputs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from domain import timestamps
from domain.status import TRANSITIONS, Command, RunStatus
from tests import builders
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


@st.composite
def lifecycles(
    draw: st.DrawFn,
    *,
    started: bool = False,
    finished: bool | None = None,
    max_steps: int = 10,
) -> list[dict[str, Any]]:
    """A valid history as `apply` lines: a create at T0, then transitions each allowed from
    the status before it, `at` never decreasing (gaps from `offsets_ms`, zero included).

    Up to `max_steps` moves between open statuses (and at most one link), then, if
    `finished` (True: always; None: maybe; False: never), a terminal transition and maybe a
    link after it. `started`: the first transition is `start`.
    """
    history = [builders.create(at=moment(0))]
    status = RunStatus.PENDING
    elapsed = 0
    linked = False

    def allowed(*, terminal: bool) -> list[Command]:
        return sorted(
            name
            for name, transition in TRANSITIONS.items()
            if status in transition.allowed_from
            and not (linked and name is Command.LINK_CF_WORKFLOW)
            and transition.target(status).is_terminal == terminal
        )

    def append(name: Command) -> None:
        nonlocal status, elapsed, linked
        elapsed += draw(offsets_ms)
        fields: dict[str, Any] = {"at": moment(elapsed)}
        if name is Command.COMPLETE:
            fields["output"] = draw(json_values)
        history.append(builders.command(name.value, **fields))
        status = TRANSITIONS[name].target(status)
        linked = linked or name is Command.LINK_CF_WORKFLOW

    if started:
        append(Command.START)
    for _ in range(draw(st.integers(min_value=0, max_value=max_steps))):
        append(draw(st.sampled_from(allowed(terminal=False))))
    if finished or (finished is None and draw(st.booleans())):
        append(draw(st.sampled_from(allowed(terminal=True))))
        if not linked and draw(st.booleans()):
            append(Command.LINK_CF_WORKFLOW)
    return history


exact_numbers = st.sampled_from(
    ["1.10", "1E+5", "-0.0", "0.1", "1e-7", "3.14159265358979323846", "12345678901234567890.50"]
).map(Decimal)
"""Numbers given as Decimal literals; they come back digit for digit (`1.10` is not `1.1`)."""

payloads: st.SearchStrategy[Any] = st.recursive(
    json_scalars | exact_numbers,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=12,
)
"""Like `json_values`, with exact numbers among the scalars."""


@st.composite
def interleaved_lifecycles(
    draw: st.DrawFn, *, max_runs: int = 4, max_steps: int = 5
) -> list[dict[str, Any]]:
    """Valid histories of up to `max_runs` runs (`run_0`, `run_1`, ...; inputs and outputs
    from `payloads`), their commands interleaved as the platform might send them: each run's
    own commands stay in order."""
    queues = []
    for index in range(draw(st.integers(min_value=1, max_value=max_runs))):
        history = draw(lifecycles(max_steps=max_steps))
        history[0]["input"] = draw(payloads)
        queues.append([{**line, "runId": f"run_{index}"} for line in history])
    merged: list[dict[str, Any]] = []
    while any(queues):
        waiting = [queue for queue in queues if queue]
        merged.append(waiting[draw(st.integers(0, len(waiting) - 1))].pop(0))
    return merged
