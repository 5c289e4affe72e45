"""Laws of the ledger, checked by hypothesis against the real application on every backend.

- A state machine drives a `Ledger` through creates, transitions, links, duplicates and
  conflicts, and compares every answer with a small model written here from lifecycle.md
  (its own transition table, its own timing arithmetic in whole milliseconds).
- A rejected command appends nothing.
- Events come back from each store exactly as the aggregate produced them.

- An `at` written in any of ISO 8601's ways names its instant, to the millisecond.

Each state-machine example gets an empty database of its own; the other properties give each
example a run id of its own in one database.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain import commands, payload
from domain.commands import CreateRun, RunCommand
from domain.errors import RunLedgerError, RunNotFound
from domain.events import RunCompleted, RunCreated, RunEvent
from domain.run import Run
from infrastructure.application import Ledger
from projections.fold import RunState, fold, to_timings, to_view
from tests import strategies
from tests.builders import T0, FakeClock
from tests.conftest import reset_postgres

# The model: lifecycle.md, restated ---------------------------------------------------------

OPEN = frozenset({"pending", "running", "paused", "waiting"})
EVERY_STATUS = OPEN | {"completed", "failed", "cancelled", "timed_out"}
TIMED = ("running", "paused", "waiting")
LINK = "linkCfWorkflow"

LIFECYCLE: dict[str, tuple[frozenset[str], str | None]] = {
    "start": (frozenset({"pending"}), "running"),
    "pause": (frozenset({"running", "waiting"}), "paused"),
    "resume": (frozenset({"paused", "waiting"}), "running"),
    "wait": (frozenset({"running"}), "waiting"),
    "complete": (frozenset({"running"}), "completed"),
    "fail": (OPEN, "failed"),
    "cancel": (OPEN, "cancelled"),
    "timeOut": (OPEN, "timed_out"),
    LINK: (EVERY_STATUS, None),
}
"""lifecycle.md's table: command -> (allowed from, to); None leaves the status as it is."""

SKEW_MS = 5 * 60 * 1000
"""How far ahead of the ledger's clock an `at` may be."""

PAYLOADS: tuple[Any, ...] = (
    None,
    {"ok": True},
    {"ok": False, "price": Decimal("1.10")},
    [1, "a", None],
    "done",
    "ünï ☃ \u2028",
    True,
    1,
    Decimal("1.10"),
    0.5,
    10**25,
)
"""Inputs and outputs, pairwise different as JSON (`true` is not `1`); the model compares
them by index. Index 0, null, is what an absent payload means."""

WORKSPACES = ("ws_1", "ws_2")
SUBJECTS = ("wf_a", "wf_b")
USERS = ("user_1", "user_2")
RUN_IDS = ("run_a", "run_b", "run_c")
MISSING_RUN = "run_missing"
KEYS = ("k1", "k2", "k3")
CF_IDS = ("cf_1", "cf_2")
REASONS = (None, None, "because", "ünï ☃")
ACTORS = (None, "system", "agent_7")
ERRORS = ("boom", "disk ☃ full", "boom", "  ")
GENERATED_RUN_ID = re.compile(r"run_[0-9A-HJKMNP-TV-Z]{26}")


def iso(ms: int) -> str:
    """T0 plus some milliseconds, as toISOString() prints it."""
    moment = T0 + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Identity:
    """What a create describes, defaults filled in: two creates of one run must agree on it."""

    workspace_id: str
    subject_id: str
    user_id: str
    parent_run_id: str | None
    mode: str
    triggered_by: str
    input: int
    cf_workflow_id: str | None


@dataclass(frozen=True)
class Signature:
    """What makes two keyed commands the same: `at` and `actor` are not part of it."""

    kind: str
    output: int | None
    error: str | None
    reason: str | None
    cf_workflow_id: str | None


@dataclass(frozen=True)
class CreateSpec:
    identity: Identity
    run_id: str | None
    idempotency_key: str | None
    at_us: int | None
    at_text: str | None
    explicit_defaults: bool
    """Send `mode`, `triggeredBy` and `input` even when they are the defaults."""

    def command(self) -> dict[str, Any]:
        identity = self.identity
        fields: dict[str, Any] = {
            "command": "create",
            "workspaceId": identity.workspace_id,
            "subjectId": identity.subject_id,
            "userId": identity.user_id,
        }
        optional = {
            "runId": self.run_id,
            "parentRunId": identity.parent_run_id,
            "mode": identity.mode if self.explicit_defaults or identity.mode != "async" else None,
            "triggeredBy": (
                identity.triggered_by
                if self.explicit_defaults or identity.triggered_by != "user"
                else None
            ),
            "cfWorkflowId": identity.cf_workflow_id,
            "at": self.at_text,
            "idempotencyKey": self.idempotency_key,
        }
        fields |= {name: value for name, value in optional.items() if value is not None}
        if self.explicit_defaults or identity.input != 0:
            fields["input"] = PAYLOADS[identity.input]
        return fields


@dataclass(frozen=True)
class TransitionSpec:
    kind: str
    run_id: str
    at_us: int | None
    at_text: str | None
    actor: str | None
    reason: str | None
    idempotency_key: str | None
    output: int | None
    """An index in PAYLOADS, or None to leave `output` out."""
    error: str
    cf_workflow_id: str

    def command(self) -> dict[str, Any]:
        optional = {
            "at": self.at_text,
            "actor": self.actor,
            "reason": self.reason,
            "idempotencyKey": self.idempotency_key,
        }
        fields = {"command": self.kind, "runId": self.run_id}
        fields |= {name: value for name, value in optional.items() if value is not None}
        if self.kind == "complete" and self.output is not None:
            fields["output"] = PAYLOADS[self.output]
        if self.kind == "fail":
            fields["error"] = self.error
        if self.kind == LINK:
            fields["cfWorkflowId"] = self.cf_workflow_id
        return fields

    def signature(self) -> Signature:
        return Signature(
            kind=self.kind,
            output=(self.output or 0) if self.kind == "complete" else None,
            error=self.error if self.kind == "fail" else None,
            reason=self.reason,
            cf_workflow_id=self.cf_workflow_id if self.kind == LINK else None,
        )


@dataclass(frozen=True)
class Rejected:
    code: str


@dataclass(frozen=True)
class Unchanged:
    """Accepted without an event: a duplicate, or linking the id the run already has."""

    run_id: str


@dataclass(frozen=True)
class Appended:
    run_id: str | None
    """None: a new run whose id the ledger chooses."""
    at_ms: int


Outcome = Rejected | Unchanged | Appended


class Logged(NamedTuple):
    command: str
    at: datetime
    recorded_at: datetime
    actor: str | None
    reason: str | None
    idempotency_key: str | None


def instant(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


@dataclass
class ModelRun:
    id: str
    identity: Identity
    created_ms: int
    derived_from: str | None
    """The idempotency key, for a run created without `runId`."""
    cf_workflow_id: str | None
    updated_ms: int
    status: str = "pending"
    output: int = 0
    error: str | None = None
    started_ms: int | None = None
    completed_ms: int | None = None
    stretches: list[tuple[str, int]] = field(default_factory=list)
    """(status, since) for every change of status, the first one `pending`."""
    keys: dict[str, Signature] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    """What each of the run's events records, oldest first."""

    @property
    def events(self) -> int:
        return len(self.log)

    def view(self) -> dict[str, Any]:
        duration = None
        if self.started_ms is not None and self.completed_ms is not None:
            duration = self.completed_ms - self.started_ms
        identity = self.identity
        return {
            "id": self.id,
            "workspaceId": identity.workspace_id,
            "subjectId": identity.subject_id,
            "parentRunId": identity.parent_run_id,
            "status": self.status,
            "mode": identity.mode,
            "input": PAYLOADS[identity.input],
            "output": PAYLOADS[self.output],
            "error": self.error,
            "triggeredBy": identity.triggered_by,
            "cfWorkflowId": self.cf_workflow_id,
            "durationMs": duration,
            "userId": identity.user_id,
            "startedAt": None if self.started_ms is None else iso(self.started_ms),
            "completedAt": None if self.completed_ms is None else iso(self.completed_ms),
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
        }

    def timings(self) -> dict[str, int | None]:
        if self.started_ms is None:
            return {"queuedMs": None, "runningMs": None, "pausedMs": None, "waitingMs": None}
        end = self.updated_ms if self.completed_ms is None else self.completed_ms
        spent = dict.fromkeys(TIMED, 0)
        for (status, since), (_, until) in zip(
            self.stretches, [*self.stretches[1:], ("", end)], strict=True
        ):
            if status in spent:
                spent[status] += until - since
        return {
            "queuedMs": self.started_ms - self.created_ms,
            "runningMs": spent["running"],
            "pausedMs": spent["paused"],
            "waitingMs": spent["waiting"],
        }


class Model:
    """The ledger as lifecycle.md describes it, in a few dictionaries.

    Where lifecycle.md is silent, the model takes the ledger's answer (the README's
    "Where the contract is silent", or else what the code does), so that a change is seen:
    - a create's idempotency key is one of the run's keys: a transition reusing it conflicts;
    - a command breaking several rules is told the first of: invalid fields, not_found, the
      key, illegal_transition, linking (same id: no-op, other id: conflict, whatever `at`),
      `at` too far ahead (invalid), out_of_order;
    - a create of an existing run is answered before its `at` is looked at;
    - linking the id a run already has appends nothing and so does not use its key;
    - a blank `error` (only spaces) is no error: invalid.
    """

    def __init__(self) -> None:
        self.runs: dict[str, ModelRun] = {}
        self.derived: dict[tuple[str, str], str] = {}
        """(workspaceId, idempotencyKey) -> the id of the run a keyed create without runId made."""

    def events(self) -> int:
        return sum(run.events for run in self.runs.values())

    def predict_create(self, spec: CreateSpec, now_us: int) -> Outcome:
        identity = spec.identity
        run_id = spec.run_id
        if run_id is None and spec.idempotency_key is not None:
            run_id = self.derived.get((identity.workspace_id, spec.idempotency_key))
        if run_id is not None and run_id in self.runs:
            same = self.runs[run_id].identity == identity
            return Unchanged(run_id) if same else Rejected("conflict")
        parent = self.runs.get(identity.parent_run_id or "")
        if identity.parent_run_id is not None and (
            parent is None or parent.identity.workspace_id != identity.workspace_id
        ):
            return Rejected("invalid")
        now_ms = now_us // 1000
        at_ms = now_ms if spec.at_us is None else spec.at_us // 1000
        if at_ms > now_ms + SKEW_MS:
            return Rejected("invalid")
        return Appended(run_id, at_ms)

    def add(self, run_id: str, spec: CreateSpec, at_ms: int, now_ms: int) -> None:
        derived_from = None
        if spec.run_id is None and spec.idempotency_key is not None:
            derived_from = spec.idempotency_key
            self.derived[(spec.identity.workspace_id, spec.idempotency_key)] = run_id
        run = ModelRun(
            id=run_id,
            identity=spec.identity,
            created_ms=at_ms,
            derived_from=derived_from,
            cf_workflow_id=spec.identity.cf_workflow_id,
            updated_ms=at_ms,
            stretches=[("pending", at_ms)],
        )
        if spec.idempotency_key is not None:
            run.keys[spec.idempotency_key] = Signature("create", None, None, None, None)
        run.log.append(
            Logged("create", instant(at_ms), instant(now_ms), None, None, spec.idempotency_key)
        )
        self.runs[run_id] = run

    def predict_transition(self, spec: TransitionSpec, now_us: int) -> Outcome:
        if spec.kind == "fail" and spec.error.strip() == "":
            return Rejected("invalid")
        run = self.runs.get(spec.run_id)
        if run is None:
            return Rejected("not_found")
        key = spec.idempotency_key
        if key is not None and key in run.keys:
            return Unchanged(run.id) if run.keys[key] == spec.signature() else Rejected("conflict")
        allowed_from, _ = LIFECYCLE[spec.kind]
        if run.status not in allowed_from:
            return Rejected("illegal_transition")
        if spec.kind == LINK and run.cf_workflow_id is not None:  # whatever its `at` (README)
            same = run.cf_workflow_id == spec.cf_workflow_id
            return Unchanged(run.id) if same else Rejected("conflict")
        now_ms = now_us // 1000
        at_ms = max(now_ms, run.updated_ms) if spec.at_us is None else spec.at_us // 1000
        if at_ms > now_ms + SKEW_MS:
            return Rejected("invalid")
        if at_ms < run.updated_ms:
            return Rejected("out_of_order")
        return Appended(run.id, at_ms)

    def apply(self, spec: TransitionSpec, at_ms: int, now_ms: int) -> None:
        run = self.runs[spec.run_id]
        run.log.append(
            Logged(
                spec.kind,
                instant(at_ms),
                instant(now_ms),
                spec.actor,
                spec.reason,
                spec.idempotency_key,
            )
        )
        run.updated_ms = at_ms
        _, to = LIFECYCLE[spec.kind]
        if to is not None:
            run.status = to
            run.stretches.append((to, at_ms))
            if to == "running" and run.started_ms is None:
                run.started_ms = at_ms
            if to not in OPEN:
                run.completed_ms = at_ms
        if spec.kind == "complete":
            run.output = spec.output or 0
        elif spec.kind == "fail":
            run.error = spec.error
        elif spec.kind == LINK:
            run.cf_workflow_id = spec.cf_workflow_id
        if spec.idempotency_key is not None:
            run.keys[spec.idempotency_key] = spec.signature()


# Drawing commands ---------------------------------------------------------------------------

OFFSETS = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))


@dataclass(frozen=True)
class AtChoice:
    """How a command's `at` is chosen: left out, after or before the run's latest event, or
    beyond the ledger's clock; and how it is written."""

    kind: str
    delta_us: int
    offset: timezone
    millis: bool
    zulu: bool

    def resolve(self, latest_us: int, now_us: int) -> int | None:
        if self.kind == "omit":
            return None
        if self.kind == "later":
            return latest_us + self.delta_us
        if self.kind == "earlier":
            return latest_us - self.delta_us
        return now_us + SKEW_MS * 1000 + self.delta_us

    def render(self, at_us: int) -> str:
        moment = (T0 + timedelta(microseconds=at_us)).astimezone(self.offset)
        precision = "milliseconds" if self.millis and at_us % 1000 == 0 else "microseconds"
        text = moment.isoformat(timespec=precision)
        return text.replace("+00:00", "Z") if self.zulu else text


_DELTAS_US = {
    "omit": st.just(0),
    "later": st.sampled_from([0, 1, 999, 1000]) | st.integers(0, 120_000_000),
    "earlier": st.sampled_from([1, 1000]) | st.integers(1, 60_000_000),
    "ahead": st.sampled_from([0, 999, 1000]) | st.integers(0, 60_000_000),
}


@st.composite
def at_choices(draw: st.DrawFn) -> AtChoice:
    kind = draw(st.sampled_from(["later"] * 6 + ["omit"] * 2 + ["earlier", "ahead"]))
    return AtChoice(
        kind=kind,
        delta_us=draw(_DELTAS_US[kind]),
        offset=draw(st.sampled_from(OFFSETS)),
        millis=draw(st.booleans()),
        zulu=draw(st.booleans()),
    )


@st.composite
def identities(draw: st.DrawFn, parents: list[str]) -> Identity:
    return Identity(
        workspace_id=draw(st.sampled_from(WORKSPACES)),
        subject_id=draw(st.sampled_from(SUBJECTS)),
        user_id=draw(st.sampled_from(USERS)),
        parent_run_id=draw(st.sampled_from([None, None, None, *parents, MISSING_RUN])),
        mode=draw(st.sampled_from(["async", "sync"])),
        triggered_by=draw(st.sampled_from(["user", "agent"])),
        input=draw(st.sampled_from([0, 0, *range(len(PAYLOADS))])),
        cf_workflow_id=draw(st.sampled_from([None, None, CF_IDS[0]])),
    )


def changed(identity: Identity, parents: list[str]) -> st.SearchStrategy[Identity]:
    """The identity with one field changed: the workspace is left alone (for a keyed run
    created without runId, another workspace names another run)."""
    other_parent = [p for p in [None, *parents, MISSING_RUN] if p != identity.parent_run_id]
    variants: dict[str, list[Any]] = {
        "subject_id": [s for s in SUBJECTS if s != identity.subject_id],
        "user_id": [u for u in USERS if u != identity.user_id],
        "parent_run_id": other_parent,
        "mode": ["sync" if identity.mode == "async" else "async"],
        "triggered_by": ["agent" if identity.triggered_by == "user" else "user"],
        "input": [i for i in range(len(PAYLOADS)) if i != identity.input],
        "cf_workflow_id": [c for c in [None, *CF_IDS] if c != identity.cf_workflow_id],
    }
    return st.sampled_from(sorted(variants)).flatmap(
        lambda name: st.sampled_from(variants[name]).map(
            lambda value: dataclasses.replace(identity, **{name: value})
        )
    )


# The state machine --------------------------------------------------------------------------


def assert_view(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """The 17 fields, in the seed's order; payloads compared as JSON."""
    assert list(actual) == list(expected)
    plain = [name for name in expected if name not in ("input", "output")]
    assert {name: actual[name] for name in plain} == {name: expected[name] for name in plain}
    assert payload.same(actual["input"], expected["input"]), (actual["input"], expected["input"])
    assert payload.same(actual["output"], expected["output"]), (
        actual["output"],
        expected["output"],
    )


class LedgerMachine(RuleBasedStateMachine):
    """Drives the `Ledger` on a database of its own and checks it against `Model`.

    Two ledgers share the database (as two processes of the command line would) and the
    clock; commands go to one of them at a time, and both must read every run alike.
    """

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.now_us = 24 * 3600 * 1_000_000  # FakeClock starts one day after T0
        self.clock = FakeClock(T0 + timedelta(microseconds=self.now_us))
        self.ledgers = [Ledger(database_url, clock=self.clock) for _ in range(2)]
        self.current = 0
        self.model = Model()
        self.keyed: list[TransitionSpec] = []
        """Accepted transitions that carried a key, to send again."""
        self.refused: list[TransitionSpec] = []
        """Rejected transitions that carried a key, whose key must still be free."""

    @property
    def ledger(self) -> Ledger:
        """The ledger that commands go to."""
        return self.ledgers[self.current]

    def teardown(self) -> None:
        for ledger in self.ledgers:
            ledger.close()

    # Acting and checking -------------------------------------------------------------------

    def stored_events(self) -> int:
        return len(self.ledger.recorder.select_notifications(start=1, limit=100_000))

    def expect_rejection(self, command: dict[str, Any], code: str) -> None:
        before = self.stored_events()

        with pytest.raises(RunLedgerError) as rejection:
            self.ledger.submit(command)

        assert rejection.value.code == code, rejection.value.message
        assert self.stored_events() == before

    def expect_state(self, state: RunState, run_id: str) -> None:
        run = self.model.runs[run_id]
        assert_view(to_view(state).to_json_dict(), run.view())
        assert to_timings(state).to_json_dict() == run.timings()
        assert state.version == run.events

    def moment(self, choice: AtChoice, latest_ms: int) -> tuple[int | None, str | None]:
        at_us = choice.resolve(latest_ms * 1000, self.now_us)
        return at_us, None if at_us is None else choice.render(at_us)

    def create(self, spec: CreateSpec) -> None:
        predicted = self.model.predict_create(spec, self.now_us)
        event(f"create: {type(predicted).__name__} {getattr(predicted, 'code', '')}")
        if isinstance(predicted, Rejected):
            self.expect_rejection(spec.command(), predicted.code)
            return

        state = self.ledger.submit(spec.command())

        run_id = predicted.run_id
        if isinstance(predicted, Appended):
            if run_id is None:  # the ledger names the run: a new id of its own making
                assert GENERATED_RUN_ID.fullmatch(state.id), state.id
                assert state.id not in self.model.runs
                run_id = state.id
            self.model.add(run_id, spec, predicted.at_ms, self.now_us // 1000)
        assert state.id == run_id
        self.expect_state(state, run_id)

    def transition(self, spec: TransitionSpec) -> None:
        predicted = self.model.predict_transition(spec, self.now_us)
        event(f"{spec.kind}: {type(predicted).__name__} {getattr(predicted, 'code', '')}")
        if isinstance(predicted, Rejected):
            self.expect_rejection(spec.command(), predicted.code)
            if spec.idempotency_key is not None and spec.run_id in self.model.runs:
                self.refused.append(spec)
            return

        state = self.ledger.submit(spec.command())

        if isinstance(predicted, Appended):
            self.model.apply(spec, predicted.at_ms, self.now_us // 1000)
            if spec.idempotency_key is not None:
                self.keyed.append(spec)
        self.expect_state(state, spec.run_id)

    def draw_create(
        self, data: st.DataObject, run_id: str | None, key: str | None, identity: Identity
    ) -> CreateSpec:
        base_ms = self.now_us // 1000 - 10 * 60 * 1000
        at_us, at_text = self.moment(data.draw(at_choices(), label="at"), base_ms)
        return CreateSpec(
            identity=identity,
            run_id=run_id,
            idempotency_key=key,
            at_us=at_us,
            at_text=at_text,
            explicit_defaults=data.draw(st.booleans(), label="explicit_defaults"),
        )

    def draw_transition(self, data: st.DataObject, kind: str, run_id: str) -> TransitionSpec:
        run = self.model.runs.get(run_id)
        latest_ms = self.now_us // 1000 if run is None else run.updated_ms
        at_us, at_text = self.moment(data.draw(at_choices(), label="at"), latest_ms)
        return TransitionSpec(
            kind=kind,
            run_id=run_id,
            at_us=at_us,
            at_text=at_text,
            actor=data.draw(st.sampled_from(ACTORS), label="actor"),
            reason=data.draw(st.sampled_from(REASONS), label="reason"),
            idempotency_key=data.draw(st.sampled_from([None, None, *KEYS]), label="key"),
            output=data.draw(st.none() | st.sampled_from(range(len(PAYLOADS))), label="output"),
            error=data.draw(st.sampled_from(ERRORS), label="error"),
            cf_workflow_id=data.draw(st.sampled_from(CF_IDS), label="cf_workflow_id"),
        )

    def known(self) -> list[str]:
        return sorted(self.model.runs)

    @staticmethod
    def logged(event_: RunEvent) -> Logged:
        return Logged(
            event_.command.value,
            event_.at,
            event_.recorded_at,
            event_.actor,
            event_.reason,
            event_.idempotency_key,
        )

    # Rules ---------------------------------------------------------------------------------

    @initialize(data=st.data())
    def create_a_first_run(self, data: st.DataObject) -> None:
        """A run to work on from the first step, whichever rules an example leaves out."""
        identity = data.draw(identities([]), label="identity")
        self.create(
            self.draw_create(
                data, RUN_IDS[0], None, dataclasses.replace(identity, parent_run_id=None)
            )
        )

    @rule(data=st.data())
    def create_a_run(self, data: st.DataObject) -> None:
        """A create of any flavour: named, named by its key, named by the ledger, the same
        create again, or a different run under an id that exists."""
        flavours = ["named", "named", "keyed"] + ["unnamed"] * (len(self.model.runs) < 8)
        flavours += ["again", "different"] * bool(self.model.runs)
        flavour = data.draw(st.sampled_from(flavours), label="flavour")
        key = data.draw(st.sampled_from([None, None, None, *KEYS]), label="key")
        if flavour in ("named", "keyed", "unnamed"):
            run_id: str | None = data.draw(st.sampled_from(RUN_IDS), label="run_id")
            identity = data.draw(identities(self.known()), label="identity")
            if flavour == "keyed":
                run_id, key = None, data.draw(st.sampled_from(KEYS), label="key")
            elif flavour == "unnamed":
                run_id, key = None, None
            self.create(self.draw_create(data, run_id, key, identity))
            return
        run = self.model.runs[data.draw(st.sampled_from(self.known()), label="run")]
        identity = run.identity
        if flavour == "different":
            identity = data.draw(changed(run.identity, self.known()), label="identity")
        if run.derived_from is None:
            self.create(self.draw_create(data, run.id, key, identity))
        else:
            self.create(self.draw_create(data, None, run.derived_from, identity))

    @precondition(lambda self: bool(self.model.runs))
    @rule(data=st.data())
    def move_a_run_on(self, data: st.DataObject) -> None:
        """One to three commands the run's status allows, so that runs travel their whole
        lifecycle."""
        open_runs = [run.id for run in self.model.runs.values() if run.status in OPEN]
        run = self.model.runs[data.draw(st.sampled_from(open_runs or self.known()), label="run")]
        for _ in range(data.draw(st.integers(1, 3), label="moves")):
            allowed = [kind for kind, (origins, _) in LIFECYCLE.items() if run.status in origins]
            onward = [kind for kind in allowed if LIFECYCLE[kind][1] in {*OPEN, "completed"}]
            kind = data.draw(st.sampled_from([*allowed, *onward * 3]), label="kind")
            self.transition(self.draw_transition(data, kind, run.id))

    @rule(data=st.data())
    def send_any_transition(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from([*self.known() * 4, MISSING_RUN]), label="run_id")
        kind = data.draw(st.sampled_from(sorted(LIFECYCLE)), label="kind")
        self.transition(self.draw_transition(data, kind, run_id))

    @precondition(lambda self: bool(self.keyed or self.refused))
    @rule(data=st.data())
    def use_a_key_again(self, data: st.DataObject) -> None:
        """An accepted keyed command sent again (another `at`, another actor): a duplicate;
        or a new command with the key of a rejected one, which is still free."""
        sent = data.draw(st.sampled_from([*self.keyed, *self.refused]), label="sent")
        run = self.model.runs[sent.run_id]
        if sent in self.keyed:
            at_us, at_text = self.moment(data.draw(at_choices(), label="at"), run.updated_ms)
            actor = data.draw(st.sampled_from(ACTORS), label="actor")
            self.transition(dataclasses.replace(sent, at_us=at_us, at_text=at_text, actor=actor))
            return
        allowed = [kind for kind, (origins, _) in LIFECYCLE.items() if run.status in origins]
        kind = data.draw(st.sampled_from(allowed), label="kind")
        spec = self.draw_transition(data, kind, run.id)
        self.transition(dataclasses.replace(spec, idempotency_key=sent.idempotency_key))

    @rule(us=st.sampled_from([1, 999, 1000]) | st.integers(0, 600_000_000))
    def advance_the_clock(self, us: int) -> None:
        self.now_us += us
        self.clock.now = T0 + timedelta(microseconds=self.now_us)

    @rule()
    def send_commands_through_the_other_ledger(self) -> None:
        self.current = 1 - self.current

    # Invariants ----------------------------------------------------------------------------

    @invariant()
    def the_store_holds_exactly_the_models_events(self) -> None:
        assert self.stored_events() == self.model.events()

    @invariant()
    def every_run_reads_back_as_the_model_predicts(self) -> None:
        for ledger, run in itertools.product(self.ledgers, self.model.runs.values()):
            history = ledger.history(run.id)
            state = ledger.state(run.id)

            assert [e.originator_version for e in history] == list(range(1, run.events + 1))
            assert [self.logged(e) for e in history] == run.log
            assert fold(history) == state
            self.expect_state(state, run.id)


@pytest.fixture
def fresh_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], str]:
    """Returns a URL to an empty ledger database, a new one each time it is called."""
    if backend == "sqlite":
        names = itertools.count()
        return lambda: f"sqlite:///{tmp_path / f'ledger-{next(names)}.db'}"
    url: str = request.getfixturevalue("postgres_database")
    # (conftest gives psycopg_pool's workers a random generator of their own)

    def emptied() -> str:
        reset_postgres(url)
        return url

    return emptied


def test_the_ledger_answers_every_command_as_the_lifecycle_model_predicts(
    fresh_database: Callable[[], str],
) -> None:
    class OnThisBackend(LedgerMachine):
        def __init__(self) -> None:
            super().__init__(fresh_database())

    run_state_machine_as_test(OnThisBackend, settings=settings(stateful_step_count=30))


# Valid histories ----------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """A valid history of one run, as commands without their `runId`."""

    commands: tuple[dict[str, Any], ...]
    status: str
    latest_ms: int
    cf_workflow_id: str | None
    keys: dict[str, dict[str, Any]]
    """idempotencyKey -> the command that used it."""

    def for_run(self, run_id: str) -> list[dict[str, Any]]:
        return [{**command, "runId": run_id} for command in self.commands]


CREATE = {"command": "create", "workspaceId": "ws_1", "subjectId": "wf_a", "userId": "user_1"}
"""A create with the required fields; add `runId` and the rest."""

SHORT_TEXTS = st.sampled_from(["", "because", "ünï ☃"])


@st.composite
def histories(
    draw: st.DrawFn,
    payloads: st.SearchStrategy[Any] = strategies.json_values,
    texts: st.SearchStrategy[str] = SHORT_TEXTS,
    max_steps: int = 8,
) -> History:
    """A create, then transitions each allowed by LIFECYCLE, `at` never going back."""
    ms = draw(st.integers(0, 3_600_000))
    create: dict[str, Any] = {
        "command": "create",
        "workspaceId": draw(strategies.identifiers),
        "subjectId": draw(strategies.identifiers),
        "userId": draw(strategies.identifiers),
        "input": draw(payloads),
        "at": strategies.moment(ms),
    }
    if draw(st.booleans()):
        create["mode"] = draw(st.sampled_from(["sync", "async"]))
    if draw(st.booleans()):
        create["triggeredBy"] = draw(st.sampled_from(["workflow", "agent", "swarm", "event"]))
    cf_workflow_id = draw(st.none() | strategies.identifiers)
    if cf_workflow_id is not None:
        create["cfWorkflowId"] = cf_workflow_id
    keys = {}
    if draw(st.booleans()):
        create["idempotencyKey"] = "k0"
        keys["k0"] = create
    history = [create]
    status = "pending"
    steps = draw(st.integers(1, max_steps + 1))
    steps = 0 if steps > max_steps else steps  # now and then, a run just created
    for index in range(1, steps + 1):
        kinds = [
            kind
            for kind, (origins, _) in LIFECYCLE.items()
            if status in origins and not (kind == LINK and cf_workflow_id is not None)
        ]
        if not kinds:
            break
        onward = [kind for kind in kinds if LIFECYCLE[kind][1] in {*OPEN, "completed"}]
        kind = draw(st.sampled_from([*kinds, *onward * 3]))
        ms += draw(strategies.offsets_ms)
        step: dict[str, Any] = {"command": kind, "at": strategies.moment(ms)}
        if draw(st.booleans()):
            step["reason"] = draw(texts)
        if draw(st.booleans()):
            step["actor"] = draw(strategies.identifiers)
        if kind == "complete" and draw(st.booleans()):
            step["output"] = draw(payloads)
        elif kind == "fail":
            step["error"] = draw(texts.filter(lambda text: text.strip() != ""))
        elif kind == LINK:
            cf_workflow_id = draw(strategies.identifiers)
            step["cfWorkflowId"] = cf_workflow_id
        if draw(st.booleans()):
            step["idempotencyKey"] = f"k{index}"
            keys[f"k{index}"] = step
        history.append(step)
        status = LIFECYCLE[kind][1] or status
    return History(tuple(history), status, ms, cf_workflow_id, keys)


def submitted(ledger: Ledger, commands_: list[dict[str, Any]]) -> list[RunState]:
    return [ledger.submit(command) for command in commands_]


# A rejected command appends nothing ---------------------------------------------------------


def deeply_nested(levels: int) -> Any:
    value: Any = None
    for _ in range(levels):
        value = [value]
    return value


NEVER_VALID: tuple[dict[str, Any], ...] = (
    {"command": "fail", "error": "  "},
    {"command": "fail"},
    {"command": "complete", "output": {"ratio": float("nan")}},
    {"command": "complete", "output": [float("inf")]},
    {"command": "complete", "output": {"k\x00": 1}},
    {"command": "complete", "output": deeply_nested(101)},
    {"command": "cancel", "reason": "a\x00b"},
    {"command": "start", "actor": "not an identifier"},
    {"command": "start", "idempotencyKey": "key\n"},
    {"command": "start", "at": "2026-11-24T05:00:00"},
    {"command": "start", "at": "yesterday"},
    {"command": "start", "colour": "red"},
    {"command": "launch"},
)
"""Transition commands that are `invalid` whatever the run's state (`runId` is added)."""


@dataclass(frozen=True)
class Rejection:
    family: str
    command: dict[str, Any]
    code: str
    new_run_id: str | None = None
    """The id a rejected create would have made, which must still name no run."""


def movable(history: History) -> list[str]:
    """The commands that would append an event to the run after `history`."""
    return [
        kind
        for kind, (origins, _) in LIFECYCLE.items()
        if history.status in origins and not (kind == LINK and history.cf_workflow_id is not None)
    ]


def families(history: History) -> list[str]:
    """The kinds of rejection that the run after `history` can be given."""
    names = ["illegal_transition", "not_found", "never_valid", "conflicting_create"]
    names += ["orphan_create", "future_create"]
    if movable(history):
        names += ["out_of_order", "too_far_ahead"]
    if history.keys:
        names.append("reused_key")
    if history.cf_workflow_id is not None:
        names.append("relinked")
    return names


@st.composite
def rejections(
    draw: st.DrawFn, family: str, history: History, run_id: str, now_ms: int
) -> Rejection:
    """A command of `family` that the ledger must reject, with the code it must give."""

    def transition(kind: str, **fields: Any) -> dict[str, Any]:
        extra = {"fail": {"error": "boom"}, LINK: {"cfWorkflowId": "cf_fresh"}}.get(kind, {})
        return {"command": kind, "runId": run_id, **extra, **fields}

    latest = strategies.moment(history.latest_ms)
    ahead = strategies.moment(now_ms + SKEW_MS + draw(st.integers(1, 60_000)))
    if family == "illegal_transition":
        illegal = [
            kind for kind, (origins, _) in LIFECYCLE.items() if history.status not in origins
        ]
        return Rejection(family, transition(draw(st.sampled_from(illegal)), at=latest), family)
    if family == "out_of_order":
        earlier = strategies.moment(history.latest_ms - draw(st.integers(1, 60_000)))
        kind = draw(st.sampled_from(movable(history)))
        return Rejection(family, transition(kind, at=earlier), family)
    if family == "too_far_ahead":
        kind = draw(st.sampled_from(movable(history)))
        return Rejection(family, transition(kind, at=ahead), "invalid")
    if family == "reused_key":
        key = draw(st.sampled_from(sorted(history.keys)))
        used = history.keys[key]
        if used["command"] != "create" and draw(st.booleans()):
            other = {**used, "runId": run_id, "reason": f"{used.get('reason', '')} and more"}
            return Rejection(family, other, "conflict")
        kind = draw(st.sampled_from([k for k in LIFECYCLE if k != used["command"]]))
        return Rejection(family, transition(kind, idempotencyKey=key), "conflict")
    if family == "relinked":
        return Rejection(family, transition(LINK, cfWorkflowId="cf_other", at=latest), "conflict")
    if family == "not_found":
        kind = draw(st.sampled_from(sorted(LIFECYCLE)))
        return Rejection(family, {**transition(kind), "runId": f"{run_id}_missing"}, family)
    if family == "never_valid":
        never = draw(st.sampled_from(NEVER_VALID))
        return Rejection(family, {**never, "runId": run_id}, "invalid")
    create = history.commands[0]
    if family == "conflicting_create":
        different = {**create, "runId": run_id, "subjectId": f"{create['subjectId']}_other"}
        return Rejection(family, different, "conflict")
    child = f"{run_id}_child"
    if family == "orphan_create":
        workspace = create["workspaceId"]
        workspace, parent = draw(
            st.sampled_from([(workspace, f"{run_id}_missing"), (f"{workspace}_other", run_id)])
        )
        orphan = {**create, "runId": child, "workspaceId": workspace, "parentRunId": parent}
        return Rejection(family, orphan, "invalid", child)
    return Rejection(family, {**create, "runId": child, "at": ahead}, "invalid", child)


def test_a_rejected_command_appends_nothing(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    clock = FakeClock()
    now_ms = (clock.now - T0) // timedelta(milliseconds=1)
    run_ids = (f"run_{n}" for n in itertools.count())

    with Ledger(url, clock=clock) as ledger:

        @given(history=histories(), data=st.data())
        def every_kind_of_rejection_appends_nothing(history: History, data: st.DataObject) -> None:
            note(f"history: {history}")
            run_id = next(run_ids)
            submitted(ledger, history.for_run(run_id))
            events_before = ledger.history(run_id)
            last_before = ledger.recorder.max_notification_id()

            for family in families(history):
                rejection = data.draw(rejections(family, history, run_id, now_ms), label=family)

                with pytest.raises(RunLedgerError) as caught:
                    ledger.submit(rejection.command)

                assert caught.value.code == rejection.code, (family, caught.value.message)
                assert ledger.history(run_id) == events_before
                assert ledger.recorder.max_notification_id() == last_before
                if rejection.new_run_id is not None:
                    with pytest.raises(RunNotFound):
                        ledger.history(rejection.new_run_id)

        every_kind_of_rejection_appends_nothing()


# `at` as it may be written -----------------------------------------------------------------


@dataclass(frozen=True)
class Spelling:
    text: str
    ms: int
    """The instant it names, to the millisecond (finer digits dropped), after T0."""


@st.composite
def spellings(draw: st.DrawFn) -> Spelling:
    """An instant written as ISO 8601 lets one write it: `T` or `t` (RFC 3339 notes that
    ISO 8601 allows either case), `Z`, `z` or an offset, a comma or a point before the
    fraction, 0 to 9 digits of fraction, or no seconds at all."""
    seconds = draw(st.integers(0, 24 * 3600))
    offset = draw(st.sampled_from(OFFSETS))
    local = (T0 + timedelta(seconds=seconds)).astimezone(offset)
    separator = draw(st.sampled_from(["T", "t"]))
    zone = local.strftime("%z")
    zone = f"{zone[:3]}:{zone[3:]}"
    if zone == "+00:00":
        zone = draw(st.sampled_from(["Z", "z", "+00:00"]))
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M")
    if local.second == 0 and draw(st.booleans()):
        return Spelling(f"{text}{zone}", seconds * 1000)
    fraction = draw(st.text("0123456789", min_size=0, max_size=9))
    point = draw(st.sampled_from([".", ","])) if fraction else ""
    ms = seconds * 1000 + int(f"{fraction}000"[:3])
    return Spelling(f"{text}:{local.second:02d}{point}{fraction}{zone}", ms)


def test_an_at_written_any_way_iso_8601_allows_names_its_instant(
    fresh_database: Callable[[], str],
) -> None:
    url = fresh_database()
    run_ids = (f"run_{n}" for n in itertools.count())

    with Ledger(url, clock=FakeClock()) as ledger:

        @given(spelling=spellings())
        def the_instant_is_read_to_the_millisecond(spelling: Spelling) -> None:
            note(f"at: {spelling.text!r}")
            command = {**CREATE, "runId": next(run_ids), "at": spelling.text}

            state = ledger.submit(command)

            assert to_view(state).to_json_dict()["createdAt"] == iso(spelling.ms)

        the_instant_is_read_to_the_millisecond()


# Events round-trip through the store --------------------------------------------------------


ROUND_TRIP_PAYLOADS = strategies.payloads | st.integers(90, 100).map(deeply_nested)
"""Payloads with exact numbers and unicode, and some nested as deep as the contract allows."""


def produced_by_the_aggregate(commands_: list[dict[str, Any]], now: datetime) -> list[RunEvent]:
    """The events the run aggregate makes of a valid history, with no database at all."""
    first, *rest = (commands.parse(command) for command in commands_)
    assert isinstance(first, CreateRun)
    assert first.run_id is not None
    run = Run.create(first.run_id, first, first.at or now, now)
    for command in rest:
        assert isinstance(command, RunCommand)
        assert run.execute(command, now)
    return list(run.collect_events())  # type: ignore[arg-type]


def fields_of(event_: RunEvent) -> tuple[str, dict[str, Any]]:
    """An event's class and fields, moments written out with their offsets."""
    return type(event_).__name__, {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in vars(event_).items()
    }


def test_events_come_back_from_the_store_as_the_aggregate_produced_them(
    fresh_database: Callable[[], str],
) -> None:
    url = fresh_database()
    clock = FakeClock()
    run_ids = (f"run_{n}" for n in itertools.count())

    with Ledger(url, clock=clock) as writer:

        @given(
            history=histories(payloads=ROUND_TRIP_PAYLOADS, texts=strategies.json_text, max_steps=6)
        )
        def events_round_trip(history: History) -> None:
            note(f"history: {history}")
            sent = history.for_run(next(run_ids))
            run_id = sent[0]["runId"]
            produced = produced_by_the_aggregate(sent, clock.now)
            answers = submitted(writer, sent)

            with Ledger(url, clock=clock) as reader:
                stored = reader.history(run_id)
                state = reader.state(run_id)

            assert [fields_of(e) for e in stored] == [fields_of(e) for e in produced]
            created = stored[0]
            assert isinstance(created, RunCreated)
            assert payload.same(payload.loads(created.input_json), sent[0].get("input"))
            assert payload.dumps(state.input) == payload.dumps(sent[0].get("input"))
            if isinstance(stored[-1], RunCompleted):
                given_output = sent[-1].get("output")
                assert payload.same(payload.loads(stored[-1].output_json), given_output)
                assert payload.dumps(state.output) == payload.dumps(given_output)
            assert to_view(state).to_json() == to_view(fold(produced)).to_json()
            assert to_view(state).to_json() == to_view(answers[-1]).to_json()

        events_round_trip()
