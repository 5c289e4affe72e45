"""Dashboard commands over the read model: runs, stats, tree, stuck.

They read the `workflow_runs` read model as `project` left it (run `project --follow` beside
a busy ledger), never the event streams, and print one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infrastructure.application import Ledger
from infrastructure.dashboard import open_queries
from infrastructure.output import write_json
from projections.queries import MAX_LIMIT, RunsQuery, StatsQuery, StuckQuery, TreeQuery

EXIT_OK = 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    runs = commands.add_parser("runs", help="a workspace's runs, newest first, a page at a time")
    runs.add_argument("--workspace-id", required=True, metavar="W")
    runs.add_argument(
        "--status", action="append", default=[], metavar="S", help="repeat for several"
    )
    runs.add_argument("--triggered-by", metavar="T")
    runs.add_argument("--subject-id", metavar="S")
    runs.add_argument("--parent-run-id", metavar="P")
    runs.add_argument("--created-from", metavar="TS", help="created at or after TS")
    runs.add_argument("--created-to", metavar="TS", help="created before TS")
    runs.add_argument("--limit", type=int, metavar="N", help=f"1 to {MAX_LIMIT}; 50 by default")
    runs.add_argument("--cursor", metavar="C", help="the nextCursor of the page before")
    runs.set_defaults(handler=_runs)

    stats = commands.add_parser("stats", help="status counts, durations, subjects, buckets")
    stats.add_argument("--workspace-id", required=True, metavar="W")
    stats.add_argument("--from", dest="start", metavar="TS", help="default: 24 hours before --to")
    stats.add_argument("--to", dest="end", metavar="TS", help="default: now, by the ledger's clock")
    stats.add_argument("--subject-id", metavar="S")
    stats.add_argument("--bucket", metavar="hour|day", help="hour by default")
    stats.set_defaults(handler=_stats)

    tree = commands.add_parser("tree", help="a run and its descendants, nested")
    tree.add_argument("run_id", metavar="RUN_ID")
    tree.add_argument("--workspace-id", metavar="W", help="only if the run is in W")
    tree.set_defaults(handler=_tree)

    stuck = commands.add_parser("stuck", help="open runs with no event for a while")
    stuck.add_argument("--workspace-id", required=True, metavar="W")
    stuck.add_argument("--idle-for", required=True, metavar="DURATION", help="30m, 2h, 1d, ...")
    stuck.add_argument("--limit", type=int, metavar="N", help=f"1 to {MAX_LIMIT}; 50 by default")
    stuck.set_defaults(handler=_stuck)


def _runs(ledger: Ledger, args: argparse.Namespace) -> int:
    query = RunsQuery.parse(
        workspace_id=args.workspace_id,
        statuses=args.status,
        triggered_by=args.triggered_by,
        subject_id=args.subject_id,
        parent_run_id=args.parent_run_id,
        created_from=args.created_from,
        created_to=args.created_to,
        limit=args.limit,
        cursor=args.cursor,
    )
    write_json(sys.stdout, open_queries(ledger).runs(query).to_json_dict())
    return EXIT_OK


def _stats(ledger: Ledger, args: argparse.Namespace) -> int:
    query = StatsQuery.parse(
        workspace_id=args.workspace_id,
        now=ledger.now(),
        start=args.start,
        end=args.end,
        subject_id=args.subject_id,
        bucket=args.bucket,
    )
    write_json(sys.stdout, open_queries(ledger).stats(query).to_json_dict())
    return EXIT_OK


def _tree(ledger: Ledger, args: argparse.Namespace) -> int:
    query = TreeQuery(args.run_id, workspace_id=args.workspace_id)
    write_json(sys.stdout, open_queries(ledger).tree(query).to_json_dict())
    return EXIT_OK


def _stuck(ledger: Ledger, args: argparse.Namespace) -> int:
    query = StuckQuery.parse(
        workspace_id=args.workspace_id, idle_for=args.idle_for, now=ledger.now(), limit=args.limit
    )
    write_json(sys.stdout, open_queries(ledger).stuck(query).to_json_dict())
    return EXIT_OK
