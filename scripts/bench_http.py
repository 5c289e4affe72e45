"""The HTTP service under concurrent clients on loopback, next to the same operations through
the ledger's in-process API (what the command line calls).

    .venv/bin/python scripts/bench_http.py [--backend sqlite|postgres]... [--clients N]
                                           [--seconds S] [--quick]

For each backend: a database of its own, `runledger serve --with-projection` (bearer tokens,
as deployed) on a free port of 127.0.0.1, some runs seeded through the batch endpoint; then
two mixes, each for a bounded time (and at most MAX_REQUESTS requests), by N client threads
with keep-alive connections:

- write-heavy: 80% writes (create, start, complete: a run's cycle), 20% single-run reads;
- read-heavy: 90% single-run reads (GET .../runs/{id}), 5% list pages (20 runs), 5% writes.

Then the same mixes with the same number of threads calling the `Ledger` in-process (submit,
view_json, the list query). Prints requests per second and p50/p99 latency. The clients run
on the same machine as the server and share its cores: the HTTP figures include their cost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchlib import database, print_table
from infrastructure.application import Ledger
from infrastructure.dashboard import open_queries
from infrastructure.http.auth import hash_token
from projections.queries import RunsQuery

WORKSPACE, TOKEN = "ws_bench", "rl_bench_token"
RUNLEDGER = Path(sys.executable).parent / "runledger"
MAX_REQUESTS = 200_000
MIXES = {
    "write-heavy": {"write": 0.8, "read": 0.2},
    "read-heavy": {"read": 0.9, "list": 0.05, "write": 0.05},
}
CYCLE = ("create", "start", "complete")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


class Client(ABC):
    """One client thread's way to the ledger: over HTTP, or in-process."""

    @abstractmethod
    def write(self, step: str, run_id: str) -> bool: ...

    @abstractmethod
    def read(self, run_id: str) -> bool: ...

    @abstractmethod
    def list(self) -> bool: ...

    def close(self) -> None:
        return None


class HttpClient(Client):
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        self.runs = f"/v1/workspaces/{WORKSPACE}/runs"

    def write(self, step: str, run_id: str) -> bool:
        if step == "create":
            body = {"runId": run_id, "subjectId": "wf_bench", "userId": "u", "input": {"n": 1}}
            return self.http.post(self.runs, json=body).status_code == 201
        body = {"output": {"ok": True}} if step == "complete" else {}
        return self.http.post(f"{self.runs}/{run_id}/{step}", json=body).status_code == 200

    def read(self, run_id: str) -> bool:
        return self.http.get(f"{self.runs}/{run_id}").status_code == 200

    def list(self) -> bool:
        return self.http.get(self.runs, params={"limit": 20}).status_code == 200

    def close(self) -> None:
        self.http.close()


class LedgerClient(Client):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.queries = ledger, open_queries(ledger)

    def write(self, step: str, run_id: str) -> bool:
        command: dict[str, Any] = {"command": step, "runId": run_id}
        if step == "create":
            command |= {"workspaceId": WORKSPACE, "subjectId": "wf_bench", "userId": "u"}
            command["input"] = {"n": 1}
        elif step == "complete":
            command["output"] = {"ok": True}
        self.ledger.submit(command)
        return True

    def read(self, run_id: str) -> bool:
        return bool(self.ledger.view_json(run_id))

    def list(self) -> bool:
        return bool(self.queries.runs(RunsQuery.parse(workspace_id=WORKSPACE, limit=20)).runs)


def drive(
    clients: list[Client], mix: dict[str, float], seeded: list[str], seconds: float, tag: str
) -> tuple[Tally, float]:
    """Every client in a thread of its own, until the time or the request budget is spent."""
    tally, lock = Tally(), threading.Lock()
    deadline = time.monotonic() + seconds
    budget = iter(range(MAX_REQUESTS))
    kinds, weights = list(mix), list(mix.values())

    def work(number: int, client: Client) -> None:
        rng = random.Random(number)
        mine: list[float] = []
        errors, cycle, run_id = 0, 0, ""
        while time.monotonic() < deadline and next(budget, None) is not None:
            kind = rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                if kind == "write":
                    step = CYCLE[cycle % 3]
                    run_id = f"run_{tag}_{number}_{cycle // 3}" if step == "create" else run_id
                    ok = client.write(step, run_id)
                    cycle += 1
                elif kind == "read":
                    ok = client.read(rng.choice(seeded))
                else:
                    ok = client.list()
            except Exception:  # counted, never hidden: the table shows errors
                ok = False
            mine.append(time.perf_counter() - started)
            errors += not ok
        with lock:
            tally.latencies += mine
            tally.errors += errors

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.monotonic() - began


@contextmanager
def served(url: str, folder: Path) -> Iterator[str]:
    out = folder / "serve.out"
    env = {k: v for k, v in os.environ.items() if k != "RUNLEDGER_DATABASE_URL"}
    env["RUNLEDGER_TOKENS"] = f"{hash_token(TOKEN)} {WORKSPACE}"
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [str(RUNLEDGER), "--db", url, "serve", "--port", "0", "--with-projection"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while not out.read_text().endswith("\n"):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("runledger serve did not start")
            time.sleep(0.05)
        yield str(json.loads(out.read_text())["listening"])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def seed(url: str, runs: int) -> list[str]:
    ids = [f"run_seed_{i}" for i in range(runs)]
    with _seeding_client(url) as http:
        for start in range(0, runs, 300):
            batch: list[dict[str, Any]] = []
            for run_id in ids[start : start + 300]:
                create = {"command": "create", "runId": run_id, "workspaceId": WORKSPACE}
                batch.append(create | {"subjectId": "wf_seed", "userId": "u"})
                batch.append({"command": "start", "runId": run_id})
                batch.append({"command": "complete", "runId": run_id, "output": {"n": 1.10}})
            answers = http.post("/v1/events:batch", json=batch).json()
            assert all(answer["ok"] for answer in answers), answers[:3]
    return ids


@contextmanager
def _seeding_client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


def row(backend: str, mix: str, path: str, tally: Tally, elapsed: float) -> list[str]:
    latencies = sorted(tally.latencies) or [0.0]
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return [
        backend,
        mix,
        path,
        f"{len(tally.latencies):,}",
        f"{len(tally.latencies) / elapsed:,.0f}",
        f"{statistics.median(latencies) * 1000:.2f}",
        f"{p99 * 1000:.2f}",
        str(tally.errors),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgres"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="per mix and path")
    parser.add_argument("--seed-runs", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="3 s a mix, 600 seeded runs")
    args = parser.parse_args()
    seconds, runs = (3.0, 600) if args.quick else (args.seconds, args.seed_runs)
    rows = []
    for backend in args.backend or ["sqlite", "postgres"]:
        with database(backend) as url, tempfile.TemporaryDirectory() as folder:
            with served(url, Path(folder)) as base:
                seeded = seed(base, runs)
                for mix, weights in MIXES.items():
                    clients: list[Client] = [HttpClient(base) for _ in range(args.clients)]
                    tally, elapsed = drive(clients, weights, seeded, seconds, f"h{mix[0]}")
                    for client in clients:
                        client.close()
                    rows.append(row(backend, mix, "HTTP", tally, elapsed))
            with Ledger(url) as ledger:
                for mix, weights in MIXES.items():
                    clients = [LedgerClient(ledger) for _ in range(args.clients)]
                    tally, elapsed = drive(clients, weights, seeded, seconds, f"l{mix[0]}")
                    rows.append(row(backend, mix, "in-process", tally, elapsed))
    print(f"{args.clients} clients, {seconds:g} s a mix, {runs:,} seeded runs")
    header = ["backend", "mix", "path", "requests", "req/s", "p50 ms", "p99 ms", "errors"]
    print_table(header, rows)


if __name__ == "__main__":
    main()
