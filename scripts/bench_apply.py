"""`runledger apply` at scale: the time, the rate, and the peak memory of the process that
reads the file and of each worker, for files of growing size, in one process and with workers.

    .venv/bin/python scripts/bench_apply.py [--backend sqlite|postgres]... [--quick]

Each file holds the create/start/complete cycles of scripts/bench's workload 3, for runs of
its own, applied as a process into one throwaway database per backend. Memory is the peak
resident set (VmHWM) read from /proc every 0.1 s, so Linux only. Flat memory means the same
peaks at 1,000,000 lines as at 200,000.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_writes import cycle
from benchlib import database, print_table
from domain import payload

SAMPLE_SECONDS = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--quick", action="store_true", help="a small run that checks it works")
    args = parser.parse_args()
    sizes = [3_000, 6_000] if args.quick else [200_000, 1_000_000]
    workers = ["1", "2"] if args.quick else ["1", "default"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = {lines: write_file(Path(folder), lines) for lines in sizes}
        for backend in args.backend or ["sqlite", "postgres"]:
            for count in workers:
                with database(backend) as url:  # each setting's own: the files' runs are new
                    for lines, path in files.items():
                        figures = measure(url, path, lines, count)
                        rows.append([backend, f"{lines:,}", count, *figures])
                        print("  " + "  ".join(rows[-1]), file=sys.stderr, flush=True)
    print()
    header = ["backend", "lines", "workers", "seconds", "lines/s", "dealer MiB", "worker MiB"]
    print_table(header, rows)


def write_file(folder: Path, lines: int) -> Path:
    path = folder / f"commands_{lines}.jsonl"  # runs of its own, whatever else is applied
    with path.open("w") as file:
        for index in range(lines // 3):
            for command in cycle(f"run_{lines}_{index}"):
                file.write(payload.dumps(command) + "\n")
    return path


def measure(url: str, path: Path, lines: int, workers: str) -> list[str]:
    """Applies the file as a process, its memory and its workers' sampled as it runs."""
    runledger = str(Path(sys.executable).parent / "runledger")
    option = [] if workers == "default" else ["--workers", workers]
    started = time.perf_counter()
    process = subprocess.Popen(
        [runledger, "--db", url, "apply", *option, str(path)], stdout=subprocess.DEVNULL
    )
    dealer = worker = 0
    while process.poll() is None:
        dealer = max(dealer, peak_mib(process.pid))
        for child in children(process.pid):
            worker = max(worker, peak_mib(child))
        time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"apply exited with status {process.returncode}")
    lines = 3 * (lines // 3)
    return [
        f"{seconds:.1f}",
        f"{lines / seconds:,.0f}",
        str(dealer),
        str(worker) if worker else "-",
    ]


def children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def peak_mib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    main()
