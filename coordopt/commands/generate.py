"""``coordopt generate``: write a synthetic instance (every generator knob is a flag)."""

from __future__ import annotations

import argparse
from pathlib import Path

from coordopt.commands.common import (
    FlagRule,
    add_json_flag,
    command,
    declare_flag_rules,
    emit_json,
    guard_size,
    log,
)
from coordopt.generator import GeneratorConfig, generate_instance
from coordopt.guards import (
    add_force_flag,
    claim_out,
    seed_int,
)
from coordopt.instance import save_instance
from coordopt.introspect import add_dataclass_flags, from_flags

FLAG_RULES = [
    FlagRule("peak", lambda args: args.seasonality > 0, "with --seasonality above 0"),
    FlagRule("cluster_affinity", lambda args: args.clusters > 0, "with --clusters above 0"),
]
"""Knobs that mean something only with another one set (refused, not ignored, without it)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="write a synthetic instance (.toml or compact .npz)", description=__doc__
    )
    p.add_argument("--out", required=True, help="output file: .toml, or .npz for large catalogs")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed")
    p.add_argument(
        "--name", default=None, help="instance name (default: derived from sizes and seed)"
    )
    add_dataclass_flags(p, GeneratorConfig)
    add_force_flag(p, "replace an existing --out")
    add_json_flag(p)
    declare_flag_rules(p, FLAG_RULES)
    p.set_defaults(func=run)


@command
def run(args: argparse.Namespace) -> int:
    cfg = from_flags(GeneratorConfig, args)
    if Path(args.out).suffix not in (".toml", ".npz"):
        raise ValueError(f"--out {args.out}: expected a .toml or .npz file name")
    out = claim_out(args.out, folder=False, force=args.force)
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
                "categories": sorted(set(inst.category)) if inst.category else [],
                "seed": args.seed,
            }
        )
    else:
        planted = f", {cfg.clusters} planted categories" if cfg.clusters else ""
        log(f"wrote {path}: {inst.summary()}{planted}")
    return 0
