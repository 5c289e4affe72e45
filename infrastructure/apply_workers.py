"""`apply` over worker processes: each line dealt to a worker by its run, the answers merged
back in the order of the lines.

`apply` is bound by its Python (parsing, deciding, writing out events and answers), and one
process keeps one core busy. Given a large file, `apply` starts worker processes, each a
`runledger apply -` of its own on the same database, and deals every line to one of them:

- A line goes to the worker of the run it names (`runId`; for a create without one but
  with an idempotency key, the run id derived from workspace and key). So all the lines of a
  run go to one worker, which decides them in the order given, as `apply` always does.
- A create whose `parentRunId` belongs to another worker is dealt alone: once that worker
  has answered every line it was sent, and before any later line is dealt. Whether the
  parent exists is then decided on the lines before the child's, and only those, as in one
  process.
- A line that names no run (a create with neither, or a line a worker will reject) goes to
  any worker. A line that is not a JSON object at all is answered here, by the same code a
  worker would answer it with (`batch.parse`).
- Answers are written in the order of the lines, each as soon as every line before it is
  answered; before waiting for more input, every line sent is answered first, so a slow
  pipe gets its answers as in one process.

The workers are in a session of their own, and ignore SIGINT and SIGTERM (`apply
--as-worker`): an interrupt that reaches this process (a Ctrl-C, or a SIGTERM sent to all of
them, as systemd stops a service) is taken as the end of its input
(infrastructure/interrupts.py): the lines dealt are sent, the workers' input is closed, and
every line sent is answered. The answers are then exactly those of the lines before the
first one left out, as in one process. A second interrupt stops the workers at once. A
worker that stops before answering all its lines stops the whole: the answers before its
first unanswered line are written, the other workers are stopped, and its error is reported.

Memory stays flat: a worker's input is a pipe, so this process waits when a worker is
behind, and each line sent is remembered only until it is answered.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import suppress
from typing import IO, Any

from domain import identifiers, payload
from domain.errors import RunLedgerError, TooLarge
from infrastructure import batch, interrupts
from infrastructure.output import write_all
from infrastructure.settings import DATABASE_URL_VARIABLE

MAX_WORKERS = 4
"""The most worker processes `apply` starts by itself (one a CPU it may use, up to this)."""

MIN_FILE_BYTES = 4 << 20
"""The smallest input (a regular file) for which `apply` starts workers by itself; starting
them costs about half a second. Measured here on SQLite with 2 workers, against none: 13,500
lines of the benchmark's (1 MiB) took 1.13-1.40 s against 0.86-0.94 s; 54,000 (4 MiB) took
2.0 s against 2.3-2.5 s."""

_BOM = "\ufeff".encode()
_OK = b'{"ok":true'


def default_workers(fd: int) -> int:
    """Workers for `apply` reading `fd` when `--workers` is not given: one a CPU (up to
    MAX_WORKERS) for a regular file of MIN_FILE_BYTES or more, else none (1: in process)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return 1
    if not stat.S_ISREG(info.st_mode) or info.st_size - _offset(fd) < MIN_FILE_BYTES:
        return 1
    return max(1, min(MAX_WORKERS, _cpus()))


def _cpus() -> int:
    """The CPUs this process may run on (all of the machine's where that is not known)."""
    if hasattr(os, "sched_getaffinity"):  # not on macOS
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _offset(fd: int) -> int:
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return 0


class WorkerFailed(Exception):
    """A worker stopped before answering every line it was sent."""

    def __init__(self, worker: int, returncode: int | None, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr
        status = "was stopped" if returncode is None else f"exited with status {returncode}"
        super().__init__(f"apply worker {worker + 1} {status} before answering its lines")

    def report(self) -> dict[str, Any]:
        """What `apply` prints: the worker's own rejection if it printed one (the database
        failed, say), else this failure, with the last line the worker printed, if any."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        if lines:
            with suppress(ValueError):
                printed = json.loads(lines[-1])
                if isinstance(printed, dict) and isinstance(printed.get("error"), dict):
                    return printed
        message = f"{self}: {lines[-1].strip()}" if lines else str(self)
        return {"error": {"code": "unexpected", "message": message}}


class Workers:
    """The worker processes of one `apply`, and the lines they have yet to answer."""

    def __init__(self, database_url: str, count: int, out: IO[bytes]) -> None:
        self._out = out
        self.rejected = 0
        argv = [sys.executable, "-m", "infrastructure.launch", "apply", "--as-worker", "-"]
        env = os.environ | {DATABASE_URL_VARIABLE: database_url}
        self._processes: list[subprocess.Popen[bytes]] = []
        self._answers: list[deque[bytes]] = []
        self._ended: list[bool] = []
        self._stderr: list[list[bytes]] = []
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []  # each worker's answers, then its errors
        try:
            self._start(argv, env, count)
        except BaseException:  # a worker could not start: none is left behind
            self.stop()
            raise
        self._pending: list[list[bytes]] = [[] for _ in range(count)]
        self._order: deque[int | bytes] = deque()  # a worker's number, or an answer made here
        self._unanswered = [0] * count
        self._next = 0
        self._isolate = False  # the line being dealt creates a child of another worker's run
        self.interrupts = interrupts.Held()
        """Given SIGINT and SIGTERM by the caller (`interrupts.taken_as_interrupts`)."""

    def _start(self, argv: list[str], env: dict[str, str], count: int) -> None:
        for worker in range(count):
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # an interrupt is passed on by this process, once
            )
            self._processes.append(process)
            self._answers.append(deque())
            self._ended.append(False)
            self._stderr.append([])
            for target in (self._read_answers, self._read_errors):
                thread = threading.Thread(target=target, args=(worker,), daemon=True)
                thread.start()
                self._threads.append(thread)

    # Lines in --------------------------------------------------------------------------------

    def apply(self, groups: Iterator[list[batch.Line]]) -> None:
        """Deals every line out and writes every answer, in order. Interrupted, it stops
        with every line it dealt sent: `finish` answers them."""
        first = True
        try:
            while True:
                with self.interrupts.waiting():
                    group = next(groups, None)
                if group is None:
                    break
                for line in group:
                    self._deal(line, first=first)
                    first = False
                self._send()
                self._write(wait=False)
                self.interrupts.check()
            self.finish()
        except WorkerFailed:
            with suppress(WorkerFailed):  # the answers up to the failed worker's first missing
                self._write(wait=True)
            raise

    def idle(self) -> None:
        """Before waiting for more input: every line sent so far answered."""
        with self.interrupts.busy():
            self._send()
            self._write(wait=True)

    def finish(self) -> None:
        """Closes the workers' input, writes the last answers, and waits for them to exit."""
        self._send()
        for process in self._processes:
            _close(process.stdin)
        self._write(wait=True)
        for worker, process in enumerate(self._processes):
            if process.wait() not in (0, 2):  # 2: some lines were rejected
                raise self._failed(worker)

    def stop(self) -> None:
        """Stops every worker still running (after a failure, or a second interrupt), and
        waits for it. (Workers ignore SIGTERM: they stop at the end of their input.)"""
        for process in self._processes:
            _close(process.stdin)
            if process.poll() is None:
                process.kill()
        for process in self._processes:
            process.wait()
        for thread in self._threads:
            thread.join()

    def _deal(self, line: batch.Line, *, first: bool) -> None:
        worker = None if isinstance(line, TooLarge) else self._worker_for(line, first=first)
        if worker is None:
            self._answer_here(line, first=first)
            return
        assert not isinstance(line, TooLarge)
        self._pending[worker].append(line)
        self._order.append(worker)
        self._unanswered[worker] += 1
        if self._isolate:
            self._isolate = False
            self._send()
            self._write(wait=True, worker=worker)

    def _worker_for(self, line: bytes, *, first: bool) -> int | None:
        """The worker a line goes to, or None for a line answered here (not a JSON object)."""
        if not first and line.startswith(_BOM):  # json.loads would skip it; the line is wrong
            return None
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            data = _as_the_ledger_reads(line, first=first)
        if type(data) is not dict:
            return None
        run_id = data.get("runId")
        if type(run_id) is not str and data.get("command") == "create":
            workspace, key = data.get("workspaceId"), data.get("idempotencyKey")
            if type(workspace) is str and type(key) is str:
                run_id = identifiers.derived_run_id(workspace, key)
        count = len(self._processes)
        if type(run_id) is not str:  # a new run, or a line to reject: any worker
            self._next = (self._next + 1) % count
            return self._next
        worker = hash(run_id) % count
        parent = data.get("parentRunId")
        if type(parent) is str and hash(parent) % count != worker:
            self._isolate = True  # the parent's worker answers all before, the child's it
            self._send()
            self._write(wait=True, worker=hash(parent) % count)
        return worker

    def _answer_here(self, line: batch.Line, *, first: bool) -> None:
        (parsed,) = batch.parse([line], first=first)
        if not isinstance(parsed, RunLedgerError):  # pragma: no cover - json.loads refused it
            raise AssertionError(f"a line refused as JSON was read as a command: {line!r}")
        self._order.append(batch.answer(parsed).encode())

    def _send(self) -> None:
        for worker, lines in enumerate(self._pending):
            if not lines:
                continue
            stdin = self._processes[worker].stdin
            assert stdin is not None
            try:
                stdin.write(b"".join(line + b"\n" for line in lines))
                stdin.flush()
            except BrokenPipeError:
                raise self._failed(worker) from None
            lines.clear()

    # Answers out ------------------------------------------------------------------------------

    def _write(self, *, wait: bool, worker: int | None = None) -> None:
        """Writes the answers that are in, in order. With `wait`: until every line sent is
        answered (or, given `worker`, every line sent to it)."""
        done: list[bytes] = []
        order, answers = self._order, self._answers
        try:
            while order:
                head = order[0]
                if isinstance(head, bytes):
                    done.append(head)
                elif answers[head]:
                    done.append(answers[head].popleft())
                    self._unanswered[head] -= 1
                elif not wait or (worker is not None and not self._unanswered[worker]):
                    break
                else:
                    self._write_out(done)
                    done = []
                    self._wait_for(head)
                    continue
                order.popleft()
        except WorkerFailed:  # the answers before the failed worker's first missing one
            self._write_out(done)
            raise
        # Not after an interrupt: a first is raised only while nothing is taken and not yet
        # written; a second stops at once (written again, a torn answer would be followed by
        # the whole of its batch).
        self._write_out(done)

    def _wait_for(self, worker: int) -> None:
        """Waits for the worker's next answer; raises WorkerFailed if it ended without one."""
        with self.interrupts.waiting(), self._ready:
            self._ready.wait_for(lambda: self._answers[worker] or self._ended[worker])
            if self._answers[worker]:
                return
        raise self._failed(worker)

    def _write_out(self, answers: list[bytes]) -> None:
        if not answers:
            return
        self.rejected += sum(not answer.startswith(_OK) for answer in answers)
        write_all(self._out, b"".join(answer + b"\n" for answer in answers))

    def _failed(self, worker: int) -> WorkerFailed:
        process = self._processes[worker]
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for thread in self._threads[2 * worker : 2 * worker + 2]:
            thread.join(timeout=5)
        stderr = b"".join(self._stderr[worker]).decode(errors="replace")
        return WorkerFailed(worker, process.returncode, stderr)

    # Reader threads -------------------------------------------------------------------------

    def _read_answers(self, worker: int) -> None:
        stdout = self._processes[worker].stdout
        assert stdout is not None
        fd, rest = stdout.fileno(), b""
        while chunk := os.read(fd, 1 << 16):
            *lines, rest = (rest + chunk).split(b"\n")
            if lines:
                with self._ready:
                    self._answers[worker].extend(lines)
                    self._ready.notify_all()
        with self._ready:
            self._ended[worker] = True
            self._ready.notify_all()

    def _read_errors(self, worker: int) -> None:
        stderr = self._processes[worker].stderr
        assert stderr is not None
        while chunk := os.read(stderr.fileno(), 1 << 16):
            self._stderr[worker].append(chunk)


def _as_the_ledger_reads(line: bytes, *, first: bool) -> object:
    """A line `json.loads` refused, read as a worker reads it: None if the worker would
    refuse it too. (The ledger takes what `json.loads` does not, such as an integer of
    more than 4,300 digits, which Python will not turn into an int.)"""
    try:
        text = line.decode()
        return payload.loads(text.removeprefix("\ufeff") if first else text)
    except (UnicodeDecodeError, RunLedgerError):
        return None


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None and not stream.closed:
        with suppress(BrokenPipeError):
            stream.close()
