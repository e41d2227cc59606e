"""``coordopt calibrate tafeng``: an instance calibrated from the Ta-Feng grocery transactions.

Products, prices, costs, segments, seasonal arrivals and attractions come from the data; the
recommendation uplift and the inventory costs are flags (the data has no recommendations and
no stock records). Every assumption is written into the instance file's header and the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coordopt.commands.common import add_json_flag, command, emit_json, log, table
from coordopt.guards import add_force_flag, claim_out
from coordopt.introspect import add_dataclass_flags, from_flags


def register(sub: argparse._SubParsersAction) -> None:
    from coordopt.calibrate import CalibrationConfig

    p = sub.add_parser(
        "calibrate", help="calibrate an instance from real transactions", description=__doc__
    )
    p.add_argument("source", choices=["tafeng"], help="the data set: tafeng")
    p.add_argument("--out", default=None, help="write the instance here (.toml)")
    p.add_argument(
        "--report", default=None, help="folder for report.md, validation.csv, validation.png"
    )
    add_dataclass_flags(p, CalibrationConfig)
    add_force_flag(p, "replace an existing --out file or a non-empty --report folder")
    add_json_flag(p)
    p.set_defaults(func=run)


@command
def run(args: argparse.Namespace) -> int:
    from coordopt.calibrate import CalibrationConfig, calibrate_tafeng, write_report
    from coordopt.data.tafeng import MissingDataDependency

    cfg = from_flags(CalibrationConfig, args)
    if args.out:  # checked before any work, as every command does
        if Path(args.out).suffix != ".toml":
            raise ValueError(f"--out {args.out}: the calibrated instance is TOML; use a .toml name")
        claim_out(args.out, folder=False, force=args.force)
    if args.report:
        claim_out(args.report, folder=True, force=args.force, flag="--report")
    try:
        cal = calibrate_tafeng(cfg)
    except MissingDataDependency as exc:
        log(f"coordopt calibrate: error: {exc}")
        return 2
    if args.out:
        log(f"wrote {cal.save(Path(args.out))}")
    if args.report:
        log(f"wrote {write_report(cal, args.report)}")
    if args.json:
        emit_json(cal.summary())
        return 0
    print(cal.header())
    rows = cal.validation_rows()[:10]
    print(
        table(
            ["product", "actual units", "model", "naive", "WAPE model", "WAPE naive"],
            [list(r.values()) for r in rows],
        )
    )
    return 0
