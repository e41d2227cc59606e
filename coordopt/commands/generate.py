"""``coordopt generate``: write a synthetic instance (every generator knob is a flag)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from coordopt.commands.common import add_json_flag, emit_json, log
from coordopt.generator import GeneratorConfig, generate_instance
from coordopt.instance import save_instance
from coordopt.introspect import field_docs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="write a synthetic instance (.toml or compact .npz)", description=__doc__
    )
    p.add_argument("--out", required=True, help="output file: .toml, or .npz for large catalogs")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--name", default=None, help="instance name (default: derived from sizes and seed)"
    )
    docs = field_docs(GeneratorConfig)
    for f in dataclasses.fields(GeneratorConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        p.add_argument(
            flag,
            type=kind,
            default=f.default,
            help=f"{docs.get(f.name, '')} (default: {f.default})",
        )
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = GeneratorConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(GeneratorConfig)}
    )
    if cfg.stockout not in ("lost", "hidden"):
        raise ValueError(f"--stockout {cfg.stockout!r}: allowed values are 'lost' and 'hidden'")
    inst = generate_instance(cfg, seed=args.seed, name=args.name)
    path = save_instance(inst, Path(args.out))
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
