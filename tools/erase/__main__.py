"""python -m tools.erase: erase one stream's archive for a range of days (see tools/erase/__init__.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tools.erase import EraseError, Plan, erase, open_archive


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.erase",
        description="Remove every object, version and delete marker of one stream's archived frames and results "
        "for a range of UTC capture days. Prints a JSON report.",
    )
    p.add_argument(
        "--archive", required=True, help="s3://bucket/prefix (the consumer's CONSUMER_ARCHIVE_URI) or a folder"
    )
    p.add_argument("--stream", required=True, help="the stream id")
    p.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD", help="first capture day (UTC)")
    p.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD", help="last capture day (UTC), included")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    return p


def main(argv: list[str] | None = None, s3_client: Any = None) -> int:
    """0: done (or nothing found); 1: some versions could not be removed or remain; 2: bad input."""
    args = parser().parse_args(argv)
    try:
        plan = Plan.parse(args.stream, args.first, args.last)
        archive = open_archive(args.archive, s3_client)
    except EraseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = erase(archive, plan, dry_run=args.dry_run)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    for error in report["errors"]:
        print(f"error: {error}", file=sys.stderr)
    if not args.dry_run and report["totals"]["remaining"]:
        print(
            f"error: {report['totals']['remaining']} versions remain under the stream's prefixes "
            "(written during the run, or refused): run again",
            file=sys.stderr,
        )
    return 1 if report["errors"] or (not args.dry_run and report["totals"]["remaining"]) else 0


if __name__ == "__main__":
    sys.exit(main())
