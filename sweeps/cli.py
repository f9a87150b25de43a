"""``unlearn-sweep``: a thin command line over library functions (parse, build a config, call)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from unlearn.errors import UnlearnError


def _cmd_losses(args: argparse.Namespace) -> int:
    from unlearn.losses.catalog import format_catalog

    print(format_catalog())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unlearn-sweep",
        description="Find the loss-reweighting settings that make a language model forget (SatImp and its family).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("losses", help="list the loss components (weightings, granularity, sampling, objectives)")
    p.set_defaults(func=_cmd_losses)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UnlearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
