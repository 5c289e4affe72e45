"""The `runledger` command's entry point. It loads the command line only once it runs, so that
an interrupt while Python loads the ledger (most of a command's first quarter second) ends
the command as one later does (`runledger: interrupted`, exit status 130), not with a
traceback."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    try:
        from infrastructure import cli  # noqa: PLC0415 - the point: imported under the try

        return cli.main()
    except KeyboardInterrupt:
        print("runledger: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # `python -m infrastructure.launch`, as `apply` starts its workers
    raise SystemExit(main())
