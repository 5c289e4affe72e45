"""`runledger serve` as an operator runs it: the console script in a process of its own, on a
free port of 127.0.0.1, stopped with SIGTERM (and it must exit 0). Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from infrastructure.http.auth import hash_token
from tests.e2e.conftest import DATABASE_URL_VARIABLE, RUNLEDGER

START_SECONDS = 20
STOP_SECONDS = 20
TOKENS_VARIABLE = "RUNLEDGER_TOKENS"

WORKSPACE_A, WORKSPACE_B = "ws_a", "ws_b"
TOKEN_A, TOKEN_B = "rl_e2e_token_a", "rl_e2e_token_b"
TOKEN_ENTRIES = f"{hash_token(TOKEN_A)} {WORKSPACE_A}\n{hash_token(TOKEN_B)} {WORKSPACE_B}\n"


@dataclass(frozen=True)
class Server:
    url: str
    stderr: Path

    def client(self, token: str | None = TOKEN_A) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without a database or tokens chosen, plus `extra`."""
    dropped = (DATABASE_URL_VARIABLE, TOKENS_VARIABLE)
    return {k: v for k, v in os.environ.items() if k not in dropped} | dict(extra or {})


def tokens_file(folder: Path) -> Path:
    path = folder / "tokens.txt"
    path.write_text("# two workspaces\n" + TOKEN_ENTRIES)
    return path


@contextmanager
def serving(
    db: str, folder: Path, *options: str, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """`runledger --db DB serve --port 0 OPTIONS` until the block ends."""
    stdout, stderr = folder / "serve.out", folder / "serve.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(RUNLEDGER), "--db", db, "serve", "--port", "0", *options],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=environment(env),
        )
    try:
        url = _listening(process, stdout, stderr)
        _wait_healthy(url)
        yield Server(url, stderr)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)
            raise AssertionError("the server did not stop on SIGTERM") from None
    assert code == 0, stderr.read_text()
    assert "Traceback" not in stderr.read_text(), stderr.read_text()


def _listening(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> str:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        line = stdout.read_text().partition("\n")
        if line[1]:
            return str(json.loads(line[0])["listening"])
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {stderr.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"serve did not listen within {START_SECONDS} s: {stderr.read_text()}")


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not accepting yet
            time.sleep(0.05)
    raise AssertionError(f"{url}/healthz did not answer 200 within {START_SECONDS} s")
