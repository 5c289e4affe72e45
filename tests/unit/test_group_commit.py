"""Group commit (infrastructure/group_commit.py): callers that arrive together share one
`execute_many`, each gets its own answer, a failure reaches only its own group, and a lone
caller is never held back."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from infrastructure import group_commit
from infrastructure.group_commit import GroupCommit, GroupInterrupted

CALLERS = 8


class Recorder:
    """An execute_many that answers each command with its double, remembering the groups;
    the first group is held until every caller has queued."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.groups: list[list[int]] = []
        self.hold = hold
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, group: Sequence[int]) -> list[object]:
        if self.hold is not None and not self.entered.is_set():
            self.entered.set()
            self.hold.wait(10)
        with self.lock:
            self.groups.append(list(group))
        return [ValueError(f"no {n}") if n < 0 else 2 * n for n in group]


def submit_all(commit: GroupCommit[int, object], numbers: Sequence[int]) -> list[object]:
    def one(n: int) -> object:
        try:
            return commit.submit(n)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(max_workers=len(numbers)) as pool:
        return list(pool.map(one, numbers))


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_callers_arriving_while_a_group_is_written_share_the_next_one() -> None:
    hold = threading.Event()
    execute = Recorder(hold)
    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)
    first = threading.Thread(target=commit.submit, args=(0,))
    first.start()
    execute.entered.wait(10)  # it leads, held inside its group
    answers: list[object] = []
    others = threading.Thread(target=lambda: answers.extend(submit_all(commit, range(1, 9))))
    others.start()
    wait_until(lambda: len(commit._queue) == CALLERS)  # all eight queued meanwhile

    hold.set()
    first.join(10)
    others.join(10)

    assert answers == [2 * n for n in range(1, 9)]
    assert execute.groups[0] == [0]
    assert sorted(execute.groups[1]) == list(range(1, 9))  # the eight in one group


def test_a_rejected_command_is_answered_to_its_caller_alone() -> None:
    commit: GroupCommit[int, object] = GroupCommit(Recorder(), max_group=500)

    answers = submit_all(commit, [1, -2, 3, -4, 5, 6, 7, 8])

    assert answers == [2, "no -2", 6, "no -4", 10, 12, 14, 16]


def test_an_error_of_the_whole_group_reaches_each_of_its_callers_and_the_next_group_goes_on() -> (
    None
):
    calls = []

    def execute(group: Sequence[int]) -> list[int]:
        calls.append(list(group))
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return list(group)

    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)

    with pytest.raises(RuntimeError, match="went away"):
        commit.submit(1)
    assert commit.submit(2) == 2


def test_a_lone_caller_leads_every_group_by_itself_at_once() -> None:
    execute = Recorder()
    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)

    answers = [commit.submit(n) for n in range(20)]

    assert answers == [2 * n for n in range(20)]
    assert execute.groups == [[n] for n in range(20)]


def test_groups_never_exceed_their_size_and_every_caller_is_answered() -> None:
    execute = Recorder()
    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=3)

    answers = submit_all(commit, list(range(40)))

    assert answers == [2 * n for n in range(40)]
    assert max(map(len, execute.groups)) <= 3
    assert sorted(n for group in execute.groups for n in group) == list(range(40))


def after_a_group_of(
    size: int, gather_seconds: float, monkeypatch: pytest.MonkeyPatch
) -> tuple[Recorder, GroupCommit[int, object]]:
    """A group commit as a group of `size` callers leaves it, and how long its next leader
    waits for as many."""
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", gather_seconds)
    execute = Recorder()
    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)
    commit._last = size
    return execute, commit


def test_after_a_group_of_several_the_leader_gathers_as_many_callers_and_goes_on_once_they_are_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    execute, commit = after_a_group_of(3, gather_seconds=10.0, monkeypatch=monkeypatch)
    started = time.monotonic()

    leader = threading.Thread(target=commit.submit, args=(1,))
    leader.start()
    wait_until(lambda: commit._gathered is not None)  # it waits for two more callers
    answers = submit_all(commit, [2, 3])
    leader.join(10)

    assert answers == [4, 6]
    assert [sorted(group) for group in execute.groups] == [[1, 2, 3]]
    assert time.monotonic() - started < 5  # woken by the third caller, not by the timeout


def test_a_gathering_leader_that_nobody_joins_goes_on_alone_after_the_gathering_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    execute, commit = after_a_group_of(8, gather_seconds=0.05, monkeypatch=monkeypatch)
    answers: list[object] = []

    leader = threading.Thread(target=lambda: answers.append(commit.submit(1)), daemon=True)
    leader.start()
    leader.join(5)

    assert answers == [2]
    assert execute.groups == [[1]]
    assert commit._gathered is None
    assert commit._last == 1


class Interrupted(BaseException):
    """What the test's SIGINT handler raises in the main thread (as Ctrl-C would raise
    KeyboardInterrupt)."""


@pytest.fixture
def interrupt_main() -> Iterator[Callable[[], None]]:
    """Interrupts the main thread, where the test runs, with a real SIGINT: a caller that
    waits in the group commit is woken with `Interrupted`."""

    def raise_interrupted(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGINT, raise_interrupted)
    main = threading.main_thread().ident
    assert main is not None
    try:
        yield lambda: signal.pthread_kill(main, signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def in_background(work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_caller_interrupted_while_it_waits_in_the_queue_leaves_it_and_its_command_is_not_run(
    interrupt_main: Callable[[], None],
) -> None:
    hold = threading.Event()
    execute = Recorder(hold)
    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)
    leader = in_background(lambda: commit.submit(0))
    execute.entered.wait(10)  # it leads, held inside its group

    def interrupt_once_queued() -> None:
        wait_until(lambda: len(commit._queue) == 1)
        interrupt_main()

    in_background(interrupt_once_queued)
    with pytest.raises(Interrupted):
        commit.submit(1)  # queued behind the leader, then interrupted
    hold.set()
    leader.join(10)

    assert commit._queue == []
    answers: list[object] = []
    in_background(lambda: answers.append(commit.submit(2)))
    wait_until(lambda: answers == [4])  # the lead was not lost
    assert execute.groups == [[0], [2]]


def test_callers_after_one_interrupted_in_their_group_are_still_woken_with_their_answers(
    interrupt_main: Callable[[], None],
) -> None:
    interrupted = threading.Event()
    groups: list[list[int]] = []

    def execute(group: Sequence[int]) -> list[int]:
        groups.append(list(group))
        if group == [0]:  # held until 1, this test's 2, 3 and 4 have queued, in that order
            wait_until(lambda: len(commit._queue) == 4)
        if 2 in group:  # 1 leads the group of 1, 2, 3 and 4; 2 is interrupted meanwhile
            interrupt_main()
            interrupted.wait(10)
        return [2 * n for n in group]

    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)
    answers: dict[int, object] = {}

    def caller(n: int, queued_before: int) -> None:
        wait_until(lambda: len(commit._queue) == queued_before)
        in_background(lambda: answers.setdefault(n, commit.submit(n)))

    caller(0, queued_before=0)
    wait_until(lambda: groups == [[0]])
    caller(1, queued_before=0)

    def after_this_test() -> None:
        caller(3, queued_before=2)
        caller(4, queued_before=3)

    later = in_background(after_this_test)
    wait_until(lambda: len(commit._queue) == 1)
    with pytest.raises(Interrupted):
        commit.submit(2)
    interrupted.set()
    later.join(10)
    wait_until(lambda: len(answers) == 4)

    assert groups == [[0], [1, 2, 3, 4]]
    assert answers == {0: 0, 1: 2, 3: 6, 4: 8}  # 3 and 4 woken although 2 was skipped


def test_a_leader_interrupted_while_it_gathers_hands_the_lead_on_without_its_command(
    interrupt_main: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    execute, commit = after_a_group_of(3, gather_seconds=10.0, monkeypatch=monkeypatch)
    answers: list[object] = []

    def interrupt_once_a_caller_waits() -> None:
        wait_until(lambda: commit._gathered is not None)  # this test leads, and gathers
        in_background(lambda: answers.append(commit.submit(2)))
        wait_until(lambda: len(commit._queue) == 1)
        monkeypatch.setattr(group_commit, "GATHER_SECONDS", 0.01)  # for the next leader
        interrupt_main()

    in_background(interrupt_once_a_caller_waits)
    with pytest.raises(Interrupted):
        commit.submit(1)
    wait_until(lambda: answers == [4])

    assert execute.groups == [[2]]  # led by the caller it handed the lead to
    assert not commit._leading


@pytest.mark.usefixtures("interrupt_main")  # for its handler: the interrupt here is simulated
def test_a_caller_interrupted_as_it_is_handed_the_lead_hands_it_on() -> None:
    hold = threading.Event()
    execute = Recorder(hold)
    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)
    in_background(lambda: commit.submit(0))
    execute.entered.wait(10)  # it leads, held inside its group
    answers: list[object] = []

    def interrupt_as_the_lead_comes() -> None:
        wait_until(lambda: len(commit._queue) == 1)  # this test's caller waits, oldest
        in_background(lambda: answers.append(commit.submit(2)))
        wait_until(lambda: len(commit._queue) == 2)
        _thread.interrupt_main()  # no real signal: raised once the waiting caller wakes
        hold.set()  # the leader finishes and hands the lead to this test's caller

    in_background(interrupt_as_the_lead_comes)
    with pytest.raises(Interrupted):
        commit.submit(1)
    wait_until(lambda: answers == [4])

    assert execute.groups == [[0], [2]]  # the lead went on to 2; 1 was never run


def test_a_leader_interrupted_while_its_group_is_saved_answers_the_others_with_an_error(
    interrupt_main: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = threading.Event()
    execute = Recorder(hold)
    commit: GroupCommit[int, object] = GroupCommit(execute, max_group=500)
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", 10.0)
    commit._last = 3  # this test's caller leads and gathers two more
    answers: list[object] = []

    def caller(n: int) -> None:
        try:
            answers.append(commit.submit(n))
        except BaseException as error:  # what each caller got is the point
            answers.append(type(error))

    def join_then_interrupt() -> None:
        wait_until(lambda: commit._gathered is not None)
        in_background(lambda: caller(1))
        in_background(lambda: caller(2))
        execute.entered.wait(10)  # the group of three is being saved
        interrupt_main()

    in_background(join_then_interrupt)
    with pytest.raises(Interrupted):
        commit.submit(0)
    wait_until(lambda: len(answers) == 2)

    assert answers == [GroupInterrupted, GroupInterrupted]  # not the leader's Interrupted
    assert not commit._leading  # and the lead was handed on
