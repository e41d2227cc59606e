"""``coordopt reproduce``: run a case study end to end (resumable) and write its report.

``--out`` is the study's folder: a folder holding this study's cells is resumed (finished
cells are kept); a non-empty folder holding anything else (another study, other files) is
refused unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from coordopt.commands.common import (
    add_json_flag,
    applies_with,
    command,
    declare_flag_rules,
    emit_json,
    log,
)
from coordopt.guards import OutputError, add_force_flag, check_out, claim_out, positive_int
from coordopt.studies import CellFailed, run_study, study_names

FLAG_RULES = applies_with("backend", {"address": ["ray"], "workers": ["process", "ray"]})
"""Which flags apply to which ``--backend`` (the others are refused, not ignored)."""


def register(sub: argparse._SubParsersAction) -> None:
    names = study_names()
    p = sub.add_parser(
        "reproduce", help="run a case study and write its report", description=__doc__
    )
    p.add_argument("study", choices=names, metavar="STUDY", help=f"one of: {', '.join(names)}")
    p.add_argument("--quick", action="store_true", help="the few-minute grid (what the tests run)")
    p.add_argument("--out", default=None, help="output folder (default: results/<study>[-quick])")
    p.add_argument(
        "--backend",
        choices=["process", "ray", "serial"],
        default="process",
        help="where cells run: local process pool (default), a Ray cluster, or in-process",
    )
    p.add_argument(
        "--address", default=None, help="Ray cluster address (default: start a local Ray)"
    )
    p.add_argument(
        "--workers", type=positive_int, default=None, help="parallel cells (default: CPU count)"
    )
    add_force_flag(p, "write into a non-empty --out that is not this study's folder")
    add_json_flag(p)
    declare_flag_rules(p, FLAG_RULES)
    p.set_defaults(func=run)


def study_folder(out: Path, study: str) -> bool:
    """Whether ``out`` holds a run of ``study`` to resume (its cells, and a manifest, if
    any, naming this study); a manifest naming another study is refused."""
    if not (out / "cells").is_dir():
        return False
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return True  # cells without a manifest: an interrupted first run
    other = manifest.get("study") if isinstance(manifest, dict) else None
    if other not in (None, study):
        raise OutputError(f"--out {out}: holds the study {other!r}, not {study!r}")
    return True


@command
def run(args: argparse.Namespace) -> int:
    out = Path(args.out or f"results/{args.study}{'-quick' if args.quick else ''}")
    # locked for the whole run (one writer per study folder); its content judged under the lock
    claim_out(out, folder=True, force=args.force, reuse=True)
    if study_folder(out, args.study):
        log(f"resuming the study in {out} (finished cells are kept)")
    else:
        check_out(out, folder=True, force=args.force)
    t0 = time.perf_counter()
    try:
        report = run_study(
            args.study,
            out,
            quick=args.quick,
            backend=args.backend,
            workers=args.workers,
            address=args.address,
        )
    except CellFailed as exc:
        log(
            f"coordopt reproduce: {exc}\nfinished cells are kept in {out / 'cells'}; "
            "run the same command again to resume"
        )
        return 1
    secs = time.perf_counter() - t0
    if args.json:
        emit_json(
            {"study": args.study, "quick": args.quick, "report": str(report), "seconds": secs}
        )
    else:
        log(f"wrote {report} ({secs:.0f} s)")
        print(report.read_text())
    return 0
