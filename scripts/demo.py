"""The demo: record a day of runs on the embedded SQLite default, project them into the read
model, and show what a person wants to see: counts by status and durations (from the read
model's `stats`), and one run's history next to its replayed view, also as of mid-run."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain import payload, timestamps
from domain.commands import parse
from domain.errors import RunLedgerError
from domain.status import RunStatus
from infrastructure import readmodel
from infrastructure.application import Ledger
from infrastructure.dashboard import open_queries
from infrastructure.progress import Progress
from projections import history
from projections.fold import fold, to_extended, to_view
from projections.queries import Stats, StatsQuery
from workload import WORKSPACES, Day

DEMO_DB = Path(".demo/runledger.db")
GROUP = 50  # commands a transaction, as `apply` would group them


def main() -> None:
    DEMO_DB.parent.mkdir(exist_ok=True)
    for stale in DEMO_DB.parent.glob(DEMO_DB.name + "*"):
        stale.unlink()
    url = f"sqlite:///{DEMO_DB}"
    start = datetime.now(UTC) - timedelta(days=1, hours=1)
    commands = Day(start=start).commands()
    print(f"runledger demo: one day of runs, {len(commands):,} commands, into {url}\n")

    with Ledger(url) as ledger:
        outcomes, seconds = record(ledger, commands)
        view = readmodel.open_view(ledger)
        with Progress("projecting", len(commands)) as progress:
            runner = readmodel.projector(ledger, view, on_batch=progress.advance)
            runner.run()
        print(
            f"\nrecorded in {seconds:.1f} s: "
            + ", ".join(f"{count:,} {name}" for name, count in sorted(outcomes.items()))
        )
        lag = readmodel.lag(ledger, view)
        print(
            f"read model: {lag.position:,} of {lag.head:,} events applied, "
            f"{lag.dead_letters} set aside"
        )
        queries = open_queries(ledger)
        window = {"start": timestamps.to_iso(start), "end": timestamps.to_iso(ledger.now())}
        stats = {
            workspace: queries.stats(
                StatsQuery.parse(workspace_id=workspace, now=ledger.now(), **window)
            )
            for workspace in WORKSPACES
        }
        print_status_table(stats)
        print_durations(stats)
        print_one_run(ledger, busiest(commands))
    print(f"\nExplore it yourself: .venv/bin/runledger --db {url} runs --workspace-id ws_acme")


def record(ledger: Ledger, commands: list[dict[str, object]]) -> tuple[Counter[str], float]:
    """Sends the day's commands in groups, as `apply` does; counts the answers."""
    outcomes: Counter[str] = Counter()
    versions: dict[str, int] = {}
    with Progress("recording", len(commands)) as progress:
        for first in range(0, len(commands), GROUP):
            group = [parse(data) for data in commands[first : first + GROUP]]
            for outcome in ledger.execute_many(group):
                if isinstance(outcome, RunLedgerError):
                    outcomes[f"rejected ({outcome.code})"] += 1
                    continue
                appended = outcome.version != versions.get(outcome.id)
                outcomes["events recorded" if appended else "duplicate deliveries ignored"] += 1
                versions[outcome.id] = outcome.version
            progress.advance(len(group))
    return outcomes, progress.elapsed


def busiest(commands: list[dict[str, object]]) -> str:
    """The run with the most commands (the first such, by id)."""
    counts = Counter(str(data["runId"]) for data in commands)
    return min(counts, key=lambda run_id: (-counts[run_id], run_id))


def print_status_table(stats: dict[str, Stats]) -> None:
    print("\nRuns by status (read model, runs created in the last 25 hours)")
    print(f"  {'status':<10}" + "".join(f"{w:>11}" for w in stats) + f"{'total':>8}")
    for status in RunStatus:
        row = [answer.counts_by_status[status.value] for answer in stats.values()]
        print(f"  {status.value:<10}" + "".join(f"{n:>11,}" for n in row) + f"{sum(row):>8,}")


def print_durations(stats: dict[str, Stats]) -> None:
    print("\nDurations of finished runs, seconds (read model)")
    print(f"  {'workspace':<12}{'subject':<22}{'runs':>6}{'p50':>9}{'p95':>9}")
    for workspace, answer in stats.items():
        overall = answer.duration_ms
        print(
            f"  {workspace:<12}{'(all)':<22}{overall.count:>6,}{_s(overall.p50):>9}"
            f"{_s(overall.p95):>9}"
        )
        for subject in answer.by_subject[:3]:
            print(
                f"  {'':<12}{subject.subject_id:<22}{subject.runs:>6,}{'':>9}"
                f"{_s(subject.p95_duration_ms):>9}"
            )


def _s(milliseconds: int | None) -> str:
    return "-" if milliseconds is None else f"{milliseconds / 1000:.1f}"


def print_one_run(ledger: Ledger, run_id: str) -> None:
    events = ledger.history(run_id)
    print(f"\nOne run's history: {run_id}")
    print(f"  {'v':>2}  {'event':<15}{'status':<22}{'at (source)':<26}{'actor':<8}reason")
    for entry in history.entries(events):
        moved = f"{entry['statusBefore'] or '':>8} -> {entry['statusAfter']}"
        print(
            f"  {entry['version']:>2}  {entry['event']:<15}{moved:<22}{entry['at']:<26}"
            f"{entry['actor'] or '':<8}{entry['reason'] or ''}"
        )
    middle = events[len(events) // 2]
    then = fold(e for e in events if e.at <= middle.at)
    now = to_extended(fold(events)).to_json_dict()
    print(f"\nIts view replayed from those events, and as of {timestamps.to_iso(middle.at)}:")
    for key, value in now["run"].items():
        earlier = to_view(then).to_json_dict()[key]
        mark = "" if earlier == value else f"   (then: {payload.dumps(earlier)})"
        print(f"  {key:<13} {payload.dumps(value)}{mark}")
    timings = ", ".join(f"{key} {value}" for key, value in now["timings"].items())
    print(f"  {'timings':<13} {timings}")


if __name__ == "__main__":
    main()
