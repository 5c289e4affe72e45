"""Writers racing on one run: each command is applied once or refused, never lost or doubled."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from domain.errors import RunLedgerError
from infrastructure.application import Ledger
from projections.fold import fold
from tests.builders import command, create

WRITERS = 6
COMMANDS_EACH = 15


def race(database_url: str, work: list[list[dict[str, object]]]) -> list[list[str]]:
    """Each writer, with its own connection, sends its commands; returns their outcomes."""

    def write(commands: list[dict[str, object]]) -> list[str]:
        outcomes = []
        with Ledger(database_url) as ledger:
            for data in commands:
                try:
                    outcomes.append(f"v{ledger.submit(data).version}")
                except RunLedgerError as error:
                    outcomes.append(error.code)
        return outcomes

    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        return list(pool.map(write, work))


def test_racing_writers_neither_lose_nor_duplicate_an_event(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        ledger.submit(create())
        ledger.submit(command("start"))
    moves = ["wait", "resume", "pause"]
    rng = random.Random(7)
    work = [
        [command(rng.choice(moves), reason=f"writer {w} #{i}") for i in range(COMMANDS_EACH)]
        for w in range(WRITERS)
    ]

    outcomes = race(database_url, work)

    with Ledger(database_url) as ledger:
        events = ledger.history("run_1")
    accepted = [answer for answers in outcomes for answer in answers if answer.startswith("v")]
    refused = Counter(answer for answers in outcomes for answer in answers if answer[0] != "v")
    assert set(refused) <= {"illegal_transition", "conflict"}
    assert [event.originator_version for event in events] == list(range(1, len(events) + 1))
    assert len(events) == 2 + len(accepted)
    assert sorted(accepted) == sorted(f"v{event.originator_version}" for event in events[2:])
    recorded = Counter(event.reason for event in events[2:])
    assert all(count == 1 for count in recorded.values())


def test_racing_duplicates_of_one_keyed_command_append_it_once(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        ledger.submit(create())
        ledger.submit(command("start"))
    finish = command("complete", output={"ok": True}, idempotencyKey="finish-1")

    outcomes = race(database_url, [[finish] for _ in range(WRITERS)])

    with Ledger(database_url) as ledger:
        events = ledger.history("run_1")
    assert [answers[0] for answers in outcomes] == ["v3"] * WRITERS
    assert len(events) == 3
    assert fold(events).status == "completed"


def test_of_two_racing_endings_exactly_one_wins(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        ledger.submit(create())
        ledger.submit(command("start"))

    outcomes = race(database_url, [[command("complete")], [command("fail", error="lost")]])

    with Ledger(database_url) as ledger:
        events = ledger.history("run_1")
    assert sorted(answers[0] for answers in outcomes) == ["illegal_transition", "v3"]
    assert len(events) == 3


# Two processes on one store: what one ledger knows may be stale --------------------------------


def outcome(ledger: Ledger, data: dict[str, object]) -> str:
    try:
        return f"v{ledger.submit(data).version}"
    except RunLedgerError as error:
        return error.code


def test_a_ledger_answers_from_the_store_once_another_ledger_changed_a_run_it_knows(
    database_url: str,
) -> None:
    with Ledger(database_url) as mine, Ledger(database_url) as theirs:
        mine.submit(create())
        mine.submit(command("start"))  # mine now decides run_1 without reading it
        theirs.submit(command("pause"))

        resumed = outcome(mine, command("resume"))  # legal only from the pause it has not seen
        theirs.submit(command("complete", output={"ok": True}))
        paused = outcome(mine, command("pause"))  # it still believes the run is running
        theirs.submit(create("run_2", idempotencyKey="k-2"))
        recreated = outcome(mine, create("run_2", idempotencyKey="k-2"))  # the same create
        changed = outcome(mine, create("run_2", subjectId="wf_other"))  # a different one
        theirs.submit(create("run_3"))
        theirs.submit(command("start", "run_3"))
        mine.submit(command("wait", "run_3"))  # mine learns run_3 at version 3
        theirs.submit(command("resume", "run_3", idempotencyKey="r-1"))
        replayed = outcome(mine, command("resume", "run_3", idempotencyKey="r-1"))

        events = mine.history("run_1")
    assert resumed == "v4"
    assert paused == "illegal_transition"
    assert (recreated, changed) == ("v1", "conflict")
    assert replayed == "v4"
    assert [event.originator_version for event in events] == [1, 2, 3, 4, 5]


def test_threads_sharing_one_ledger_each_get_their_own_answers_in_their_own_order(
    database_url: str,
) -> None:
    def drive(writer: int) -> list[str]:
        run_id = f"run_{writer}"
        lines = [
            create(run_id),
            command("start", run_id),
            command("resume", run_id),  # refused: the run is not paused
            command("complete", run_id, output={"writer": writer}),
        ]
        return [outcome(ledger, data) for data in lines]

    with Ledger(database_url) as ledger:
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            answers = list(pool.map(drive, range(WRITERS)))
        states = [fold(ledger.history(f"run_{writer}")) for writer in range(WRITERS)]

    assert answers == [["v1", "v2", "illegal_transition", "v3"]] * WRITERS
    assert [state.output for state in states] == [{"writer": w} for w in range(WRITERS)]
