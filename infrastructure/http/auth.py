"""Bearer tokens scoped to a workspace, configured by the operator, hashed at rest.

The tokens file (`runledger serve --tokens FILE`), or else the RUNLEDGER_TOKENS variable,
holds one entry a line (the variable may also separate entries with commas); `#` starts a
comment:

    sha256:<the token's SHA-256, 64 hex digits> <workspaceId>

Only hashes are kept, so the file gives no token away. `python -m infrastructure.http.auth W`
makes a token for workspace W and prints it with its entry. A request sends
`Authorization: Bearer <token>`; the token's hash is compared with every entry with
`hmac.compare_digest`. A token may use its workspace only;
several tokens may share one (to rotate them, add the new entry, then remove the old one).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from domain import identifiers, payload
from domain.errors import InvalidCommand
from infrastructure.http.problems import ServiceProblem

TOKENS_VARIABLE = "RUNLEDGER_TOKENS"
PREFIX = "sha256:"
_ENTRY = re.compile(r"sha256:(?P<digest>[0-9a-f]{64})\s+(?P<workspace>\S+)")
_CHALLENGE = 'Bearer realm="runledger"'


def hash_token(token: str) -> str:
    """A token's entry hash: `sha256:` and 64 hex digits."""
    return PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe."""
    return "rl_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Tokens:
    """The table of token hashes and the workspace each one may use."""

    entries: tuple[tuple[bytes, str], ...]

    @classmethod
    def parse(cls, text: str, *, source: str) -> Tokens:
        entries: dict[bytes, str] = {}
        if source == TOKENS_VARIABLE:
            text = text.replace(",", "\n")
        for number, line in enumerate(text.splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            match = _ENTRY.fullmatch(entry)
            if match is None:
                raise InvalidCommand(
                    f"{source}, entry {number}: expected 'sha256:<64 hex digits> WORKSPACE_ID' "
                    "(a hash, never the token itself); `python -m infrastructure.http.auth "
                    "WORKSPACE_ID` makes a token and prints its entry"
                )
            workspace = identifiers.check(match["workspace"], field=f"{source}, entry {number}")
            digest = bytes.fromhex(match["digest"])
            if entries.setdefault(digest, workspace) != workspace:
                raise InvalidCommand(f"{source}, entry {number}: the same token for two workspaces")
        if not entries:
            raise InvalidCommand(
                f"{source} holds no token; add entries, or start with --dev to serve without "
                "authentication on a developer's machine"
            )
        return cls(tuple(entries.items()))

    @classmethod
    def load(cls, path: str | None, environ: Mapping[str, str]) -> Tokens | None:
        """From the file, else the variable; None when neither is given."""
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise InvalidCommand(f"cannot read the tokens file {path!r}: {error}") from None
            return cls.parse(text, source=path)
        variable = environ.get(TOKENS_VARIABLE)
        return None if variable is None else cls.parse(variable, source=TOKENS_VARIABLE)

    @property
    def workspaces(self) -> set[str]:
        return {workspace for _, workspace in self.entries}

    def workspace_of(self, token: str) -> str | None:
        """The workspace of a token, or None. Every entry is compared, in constant time each."""
        digest = hashlib.sha256(token.encode(errors="surrogatepass")).digest()
        found: str | None = None
        for known, workspace in self.entries:
            if hmac.compare_digest(digest, known):
                found = workspace
        return found


@dataclass(frozen=True)
class Access:
    """What a request may touch: one workspace, or every one (development mode, None)."""

    workspace: str | None

    def check(self, workspace_id: str) -> None:
        """A workspace path that is not the token's own is refused (403)."""
        if self.workspace is not None and self.workspace != workspace_id:
            raise ServiceProblem(
                "forbidden", f"this token may use workspace {self.workspace!r} only"
            )


def authenticate(tokens: Tokens | None, authorization: str | None) -> Access:
    """The access an `Authorization` header grants; 401 without a known bearer token."""
    if tokens is None:
        return Access(None)
    if authorization is None:
        raise ServiceProblem(
            "unauthorized", "send Authorization: Bearer <token>", {"WWW-Authenticate": _CHALLENGE}
        )
    scheme, _, token = authorization.partition(" ")
    workspace = tokens.workspace_of(token.strip()) if scheme.lower() == "bearer" else None
    if workspace is None:
        raise ServiceProblem(
            "unauthorized",
            "the bearer token is not one this service knows",
            {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
        )
    return Access(workspace)


def main(argv: list[str] | None = None) -> int:
    """Makes a token: prints it (for the client) and its entry (for the tokens file)."""
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.http.auth",
        description="Make a bearer token for a workspace of `runledger serve`.",
    )
    parser.add_argument("workspace_id", metavar="WORKSPACE_ID")
    workspace = parser.parse_args(argv).workspace_id
    if identifiers.IDENTIFIER.fullmatch(workspace) is None:
        parser.error(f"{workspace!r} is not a workspace id")
    token = new_token()
    print(payload.dumps({"token": token, "entry": f"{hash_token(token)} {workspace}"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
