"""The ``coordopt`` command line.

Each sub-command lives in ``coordopt/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. With
``--json`` a command prints exactly one JSON object on stdout; progress and logs go to
stderr, so commands compose in pipelines.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from coordopt.instance import InstanceError

COMMANDS = (
    "generate",
    "evaluate",
    "solve",
    "insights",
    "train",
    "reproduce",
    "bench",
    "demo",
    "calibrate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordopt",
        description="Coordinate inventory replenishment with product recommendation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"coordopt.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"coordopt.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (InstanceError, ValueError, FileNotFoundError) as exc:
        print(f"coordopt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"coordopt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
