"""``coordopt generate``: write a synthetic instance (every generator knob is a flag)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from coordopt.commands.common import add_json_flag, emit_json, guard_size, log
from coordopt.generator import GeneratorConfig, generate_instance
from coordopt.guards import (
    Range,
    add_force_flag,
    check_out,
    finite_float,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
)
from coordopt.instance import save_instance
from coordopt.introspect import field_docs

RANGES: dict[str, Range] = {
    "n_products": positive_int,
    "n_segments": positive_int,
    "horizon": positive_int,
    "slate_size": positive_int,
    "latent_dim": positive_int,
    "max_lead_time": nonneg_int,
    "uplift": nonneg_float,
    "purchase_share": Range(float, 0.0, 1.0, lo_open=True, hi_open=True),
    "mean_arrivals": positive_float,
    "holding_rate": nonneg_float,
    "penalty_rate": nonneg_float,
    "salvage_rate": nonneg_float,
    "discount": Range(float, 0.0, 1.0, lo_open=True),
    "initial_periods": nonneg_float,
}
"""The allowed range of each numeric :class:`GeneratorConfig` knob (checked by argparse)."""

CHOICES = {"stockout": ["lost", "hidden"]}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="write a synthetic instance (.toml or compact .npz)", description=__doc__
    )
    p.add_argument("--out", required=True, help="output file: .toml, or .npz for large catalogs")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed")
    p.add_argument(
        "--name", default=None, help="instance name (default: derived from sizes and seed)"
    )
    docs = field_docs(GeneratorConfig)
    for f in dataclasses.fields(GeneratorConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        rule = RANGES.get(f.name, Range(int) if kind is int else finite_float)
        typed: dict[str, object] = (
            {"choices": CHOICES[f.name]} if f.name in CHOICES else {"type": rule}
        )
        p.add_argument(
            flag,
            default=f.default,
            help=f"{docs.get(f.name, '')} (default: {f.default})",
            **typed,
        )
    add_force_flag(p, "replace an existing --out")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = GeneratorConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(GeneratorConfig)}
    )
    out = check_out(args.out, folder=False, force=args.force)
    guard_size(
        args,
        cfg,
        what=f"to generate {cfg.n_products:,} products x {cfg.n_segments:,} segments",
        way_out="use fewer --n-products or --n-segments",
    )
    inst = generate_instance(cfg, seed=args.seed, name=args.name)
    path = save_instance(inst, Path(out))
    if args.json:
        emit_json(
            {
                "path": str(path),
                "name": inst.name,
                "n_products": inst.n_products,
                "n_segments": inst.n_segments,
                "horizon": inst.horizon,
                "seed": args.seed,
            }
        )
    else:
        log(f"wrote {path}: {inst.summary()}")
    return 0
