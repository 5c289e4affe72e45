"""Where the ledger keeps its events: a database URL, turned into the library's settings."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from domain.errors import InvalidCommand

DEFAULT_DATABASE_URL = "sqlite:///runledger.db"
DATABASE_URL_VARIABLE = "RUNLEDGER_DATABASE_URL"


@dataclass(frozen=True)
class Database:
    url: str
    backend: str  # "sqlite" or "postgres"
    env: dict[str, str]

    @property
    def display(self) -> str:
        """The URL without its password, fit to print."""
        return re.sub(r"(://[^/@:]*:)[^@]*@", r"\1***@", self.url, count=1)


def database_url(given: str | None) -> str:
    """`--db`, else RUNLEDGER_DATABASE_URL, else a SQLite file in the working directory."""
    if given is not None and not given.strip():
        raise InvalidCommand("--db is empty: give a database URL, or leave --db out")
    return given or os.environ.get(DATABASE_URL_VARIABLE) or DEFAULT_DATABASE_URL


def parse_database_url(url: str) -> Database:
    if "\x00" in unquote(url):
        raise InvalidCommand("the database URL holds a NUL character (%00), which no name can")
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return Database(url, "sqlite", _sqlite_env(url))
    if scheme in ("postgresql", "postgres"):
        return Database(url, "postgres", _postgres_env(url))
    raise InvalidCommand(
        f"the database URL must start with sqlite:/// or postgresql://, not {url[:60]!r}"
    )


_COMMON = {
    "ORIGINATOR_ID_TYPE": "text",
    "AGGREGATE_CACHE_MAXSIZE": "",
}


def _sqlite_env(url: str) -> dict[str, str]:
    if not url.startswith("sqlite:///"):
        raise InvalidCommand(
            "a SQLite URL is sqlite:///relative/path.db, sqlite:////absolute/path.db "
            f"or sqlite:///:memory:, not {url!r}"
        )
    path = unquote(url.removeprefix("sqlite:///"))
    if path == ":memory:":
        name = f"file:runledger-{id(url)}-{os.getpid()}?mode=memory&cache=shared"
    elif not path:
        raise InvalidCommand(f"the SQLite URL {url!r} names no file")
    else:
        name = str(Path(path))
    return _COMMON | {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": name,
        "SQLITE_LOCK_TIMEOUT": "30",
        "APPLICATION_RECORDER_TOPIC": "infrastructure.eventstore_sqlite:OneWriterSQLiteRecorder",
    }


def _redacted(url: str) -> str:
    return Database(url, "", {}).display


def _postgres_env(url: str) -> dict[str, str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidCommand("the PostgreSQL URL is malformed") from None
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname:
        raise InvalidCommand(
            "a PostgreSQL URL is postgresql://user:password@host:port/dbname, "
            f"not {_redacted(url)!r}"
        )
    try:
        port = parts.port or 5432
    except ValueError:
        raise InvalidCommand(
            f"the port in {_redacted(url)!r} is not a port number (0 to 65535)"
        ) from None
    return _COMMON | {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "8",
        # Never the database functions: with them a reader tailing the log can miss events.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        # The library's recorder, its inserts sent in one round trip (same lock, same NOTIFY).
        "APPLICATION_RECORDER_TOPIC": "infrastructure.eventstore_postgres:OneTripRecorder",
    }
