# shellcheck shell=bash
# Sourced by scripts/test and scripts/bench. Defines ensure_postgres, which exports
# RUNLEDGER_TEST_POSTGRES_URL: a server on which the tests may CREATE/DROP DATABASE.
#
#   a) RUNLEDGER_TEST_POSTGRES_URL already set: use it (it must answer).
#   b) a server answers on 127.0.0.1:5432 as user postgres: use it.
#   c) otherwise start a throwaway cluster in a temp dir, stopped and removed
#      by an EXIT trap (this replaces any EXIT trap the caller had).
#
# RUNLEDGER_TEST_POSTGRES=throwaway skips (a) and (b): always use a throwaway
# cluster (handy for testing this file, or for isolation from a shared server).
#
# Any failure prints why and exits the calling shell non-zero; it never skips.

_RUNLEDGER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_RUNLEDGER_PY="$_RUNLEDGER_ROOT/.venv/bin/python"
_RUNLEDGER_PG_TMP=""
_RUNLEDGER_PG_BIN=""

_pg_die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

_pg_is_root() { [ "$(id -u)" -eq 0 ]; }

# The URL without its password, for printing.
_pg_redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#; s#(password=)[^& ]*#\1***#' <<<"$1"; }

# _pg_answers URL TIMEOUT [verbose]: does a server accept a connection? (psycopg)
_pg_answers() {
    [ -x "$_RUNLEDGER_PY" ] || _pg_die "$_RUNLEDGER_PY not found; run scripts/install"
    "$_RUNLEDGER_PY" - "$@" <<'PY'
import sys

import psycopg

url, timeout, verbose = sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3
try:
    psycopg.connect(url, connect_timeout=timeout).close()
except psycopg.Error as exc:
    if verbose:
        print(f"postgres.sh: {exc}".strip(), file=sys.stderr)
    sys.exit(1)
PY
}

# Print the directory holding initdb and pg_ctl: PATH first, then the newest
# /usr/lib/postgresql/*/bin.
_pg_find_bindir() {
    local dirs=() dir
    if command -v pg_ctl >/dev/null; then
        dirs+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")")
    fi
    mapfile -t -O "${#dirs[@]}" dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
    for dir in "${dirs[@]}"; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

# Run a command in the temp dir, as the postgres user when we are root
# (initdb and postgres refuse to run as root).
_pg_as_owner() {
    (
        cd "$_RUNLEDGER_PG_TMP" || exit 1
        if _pg_is_root; then
            runuser -u postgres -- "$@"
        else
            "$@"
        fi
    )
}

_pg_cleanup() {
    [ -n "$_RUNLEDGER_PG_TMP" ] || return 0
    if [ -f "$_RUNLEDGER_PG_TMP/data/postmaster.pid" ]; then
        _pg_as_owner "$_RUNLEDGER_PG_BIN/pg_ctl" -D "$_RUNLEDGER_PG_TMP/data" -m immediate stop \
            >/dev/null || echo "postgres.sh: could not stop the cluster in $_RUNLEDGER_PG_TMP" >&2
    fi
    rm -rf "$_RUNLEDGER_PG_TMP"
}

_pg_start_throwaway() {
    local tmp port log py opts
    if ! _RUNLEDGER_PG_BIN=$(_pg_find_bindir); then
        if ! _pg_is_root || ! command -v apt-get >/dev/null; then
            _pg_die "initdb/pg_ctl not found; install PostgreSQL or set RUNLEDGER_TEST_POSTGRES_URL"
        fi
        echo "postgres.sh: initdb/pg_ctl not found; installing postgresql with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq postgresql; } >/dev/null \
            || _pg_die "apt-get install postgresql failed"
        _RUNLEDGER_PG_BIN=$(_pg_find_bindir) \
            || _pg_die "initdb/pg_ctl still not found after installing postgresql"
    fi
    if _pg_is_root; then
        id postgres >/dev/null 2>&1 \
            || _pg_die "running as root but there is no 'postgres' user to run initdb as"
    fi

    tmp=$(mktemp -d -t runledger-pg.XXXXXX) || _pg_die "mktemp failed"
    _RUNLEDGER_PG_TMP=$tmp
    trap _pg_cleanup EXIT
    if _pg_is_root; then chown postgres: "$tmp" || _pg_die "chown $tmp failed"; fi

    log="$tmp/postgres.log"
    _pg_as_owner "$_RUNLEDGER_PG_BIN/initdb" -D "$tmp/data" -A trust -U postgres --no-sync \
        -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1 \
        || { cat "$tmp/initdb.log" >&2 || true; _pg_die "initdb failed (output above)"; }

    py=$_RUNLEDGER_PY
    [ -x "$py" ] || py=python3
    port=$("$py" -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') \
        || _pg_die "could not pick a free port"
    opts="-c listen_addresses=127.0.0.1 -p $port -k '$tmp' -c max_connections=200"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _pg_as_owner "$_RUNLEDGER_PG_BIN/pg_ctl" -D "$tmp/data" -l "$log" -w -o "$opts" start >/dev/null \
        || { tail -n 20 "$log" >&2 || true; _pg_die "pg_ctl start failed (log above)"; }

    export RUNLEDGER_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "postgres.sh: using throwaway cluster $RUNLEDGER_TEST_POSTGRES_URL (in $tmp)" >&2
}

ensure_postgres() {
    local url=${RUNLEDGER_TEST_POSTGRES_URL:-}
    local default="postgresql://postgres@127.0.0.1:5432/postgres"
    if [ "${RUNLEDGER_TEST_POSTGRES:-}" = throwaway ]; then
        _pg_start_throwaway
    elif [ -n "$url" ]; then
        if command -v pg_isready >/dev/null; then
            pg_isready -q -t 5 -d "$url"
        else
            _pg_answers "$url" 5 verbose
        fi || _pg_die "RUNLEDGER_TEST_POSTGRES_URL=$(_pg_redact "$url") does not answer"
        echo "postgres.sh: using RUNLEDGER_TEST_POSTGRES_URL=$(_pg_redact "$url")" >&2
    elif _pg_answers "$default" 3; then
        export RUNLEDGER_TEST_POSTGRES_URL=$default
        echo "postgres.sh: using local server $default" >&2
    else
        _pg_start_throwaway
    fi
}
