"""The ``coordopt`` command line.

Each sub-command lives in ``coordopt/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. With
``--json`` a command prints exactly one JSON object on stdout; progress and logs go to
stderr, so commands compose in pipelines.

:func:`main` is the one error boundary: every known failure ends as one line on stderr and
the exit code of its kind (:class:`coordopt.guards.ExitCode`); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from coordopt.guards import ExitCode

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

FAILURES: tuple[tuple[str, str, ExitCode], ...] = (
    ("coordopt.guards", "SizeError", ExitCode.TOO_LARGE),
    ("coordopt.guards", "OutputError", ExitCode.OUTPUT),
    ("coordopt.guards", "DeviceError", ExitCode.DEVICE),
    ("coordopt.guards", "MissingExtra", ExitCode.USAGE),
    ("coordopt.solution", "SolveError", ExitCode.SOLVER),
    ("coordopt.solvers.dp", "DPError", ExitCode.SOLVER),
    ("coordopt.studies", "CellFailed", ExitCode.SOLVER),
    ("coordopt.rl.ppo", "TrainingDiverged", ExitCode.DIVERGED),
    ("builtins", "FloatingPointError", ExitCode.DIVERGED),
    ("torch", "OutOfMemoryError", ExitCode.TOO_LARGE),
    ("builtins", "MemoryError", ExitCode.TOO_LARGE),
    ("builtins", "FileNotFoundError", ExitCode.USAGE),
    ("builtins", "OSError", ExitCode.FILESYSTEM),
    ("builtins", "ValueError", ExitCode.USAGE),
)
"""Known failures, most specific first: (module, class, exit code). A class is looked up only
if its module is already imported (an exception cannot come from a module never loaded)."""


def exit_code(exc: BaseException) -> ExitCode:
    """The exit code of a failure (:attr:`ExitCode.INTERNAL` for an unknown one)."""
    for module, name, code in FAILURES:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return code
    return ExitCode.INTERNAL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordopt",
        description="Coordinate inventory replenishment with product recommendation.",
        epilog="exit codes: "
        + ", ".join(f"{int(c)} {c.name.lower().replace('_', ' ')}" for c in ExitCode),
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
    _add_debug_flag(parser, top=True)
    return parser


def _add_debug_flag(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug`` on the top parser and on every sub-command (tracebacks of failures)."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the traceback of a failure",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_debug_flag(child)


def _fail(command: str, exc: BaseException, debug: bool) -> int:
    code = exit_code(exc)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    if code is ExitCode.INTERNAL:
        message = (
            f"internal error ({type(exc).__name__}: {message}); "
            "rerun with --debug for the traceback and please report it"
        )
    print(f"coordopt {command}: error: {message}", file=sys.stderr)
    return int(code)


def main(argv: list[str] | None = None) -> int:
    """Run ``coordopt`` with ``argv``; return the exit code (failures are reported on stderr,
    never raised)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    command = next((a for a in argv if a in COMMANDS), "")
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a flag argparse refused (2, message printed)
            return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return int(ExitCode.USAGE)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"coordopt {command}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        return _fail(command, exc, debug)


if __name__ == "__main__":
    raise SystemExit(main())
