"""The demo: record a day of runs on the embedded SQLite default, then show what it knows."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain import payload
from domain.errors import RunLedgerError
from domain.status import RunStatus
from infrastructure.application import Ledger
from infrastructure.progress import Progress
from projections import history
from projections.fold import RunState, to_extended
from workload import WORKSPACES, Day

DEMO_DB = Path(".demo/runledger.db")
KINDS = {"wf": "workflow", "agent": "agent", "swarm": "swarm"}


def main() -> None:
    DEMO_DB.parent.mkdir(exist_ok=True)
    for stale in DEMO_DB.parent.glob(DEMO_DB.name + "*"):
        stale.unlink()
    url = f"sqlite:///{DEMO_DB}"
    day = Day(start=datetime.now(UTC) - timedelta(days=1, hours=1))
    commands = day.commands()
    print(f"runledger demo: one day of runs, {len(commands):,} commands, into {url}\n")

    outcomes: Counter[str] = Counter()
    versions: dict[str, int] = {}
    with Ledger(url) as ledger:
        with Progress("recording", len(commands)) as progress:
            for command in commands:
                try:
                    state = ledger.submit(command)
                except RunLedgerError as error:
                    outcomes[f"rejected ({error.code})"] += 1
                else:
                    appended = state.version != versions.get(state.id)
                    outcomes["recorded" if appended else "duplicates ignored"] += 1
                    versions[state.id] = state.version
                progress.advance()
        runs = [ledger.state(run_id) for run_id in sorted({c["runId"] for c in commands})]
        print(
            f"\n{len(commands):,} commands in {progress.elapsed:.1f} s "
            f"({progress.rate:,.0f}/s); answers: "
            + ", ".join(f"{count:,} {name}" for name, count in sorted(outcomes.items()))
        )
        print_status_table(runs)
        print_durations(runs)
        print_one_run(ledger, runs)
    print(f"\nExplore it yourself: .venv/bin/runledger --db {url} history {runs[0].id}")


def print_status_table(runs: list[RunState]) -> None:
    counts = Counter((run.workspace_id, run.status) for run in runs)
    print("\nRuns by status")
    header = f"  {'status':<10}" + "".join(f"{w:>11}" for w in WORKSPACES) + f"{'total':>8}"
    print(header)
    for status in RunStatus:
        row = [counts[(w, status)] for w in WORKSPACES]
        print(f"  {status.value:<10}" + "".join(f"{n:>11,}" for n in row) + f"{sum(row):>8,}")


def print_durations(runs: list[RunState]) -> None:
    by_kind: defaultdict[str, list[int]] = defaultdict(list)
    for run in runs:
        view = to_extended(run).run
        if view.duration_ms is not None:
            by_kind[KINDS[run.subject_id.split("_", 1)[0]]].append(view.duration_ms)
    print("\nDurations of finished runs (seconds)")
    print(f"  {'kind':<10}{'runs':>7}{'p50':>9}{'p95':>9}{'max':>9}")
    for kind in sorted(by_kind):
        values = sorted(by_kind[kind])
        p50, p95 = (values[max(0, int(q * len(values) + 0.999) - 1)] for q in (0.5, 0.95))
        print(
            f"  {kind:<10}{len(values):>7,}{p50 / 1000:>9.1f}{p95 / 1000:>9.1f}"
            f"{values[-1] / 1000:>9.1f}"
        )


def print_one_run(ledger: Ledger, runs: list[RunState]) -> None:
    run = max(runs, key=lambda state: (state.version, state.id))
    print(f"\nOne run's history: {run.id} ({run.subject_id}, {run.workspace_id})")
    print(f"  {'v':>2}  {'event':<15}{'status':<22}{'at (source)':<26}{'actor':<8}reason")
    for entry in history.entries(ledger.history(run.id)):
        moved = f"{entry['statusBefore'] or '':>8} -> {entry['statusAfter']}"
        print(
            f"  {entry['version']:>2}  {entry['event']:<15}{moved:<22}{entry['at']:<26}"
            f"{entry['actor'] or '':<8}{entry['reason'] or ''}"
        )
    print("\nIts view, replayed from those events (runledger show --extended):")
    extended = to_extended(run).to_json_dict()
    for key, value in extended["run"].items():
        print(f"  {key:<13} {payload.dumps(value)}")
    timings = ", ".join(f"{key} {value}" for key, value in extended["timings"].items())
    print(f"  {'timings':<13} {timings}")


if __name__ == "__main__":
    main()
