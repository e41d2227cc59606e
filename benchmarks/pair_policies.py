"""Pair policies (training runs included) with one another on the scale study's stream.

Usage::

    .venv/bin/python benchmarks/pair_policies.py INSTANCE SPEC... [--against SPEC,...]
        [--cells results/scale/cells] [--episodes 32] [--seed 5]

Every ``SPEC`` (a policy name with options, or a training run directory) is simulated as the
``scale`` study simulates its policies (float32, its batch size, ``--episodes`` episodes of
stream ``--seed``: common random numbers), and paired with each ``--against`` policy: read
from the study's finished cells under ``--cells`` where one holds it (same catalog, episodes
and seed), else simulated here. Prints each policy's mean profit and 95% half-width, then
every paired difference with its 95% half-width.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from coordopt.case_studies.common import paired_ci
from coordopt.case_studies.scale.runner import evaluate_all
from coordopt.evaluation import ci_halfwidth
from coordopt.instance import load_instance


def _from_cells(cells: Path, name: str, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """The per-episode profits of every policy a finished ``scale`` cell holds for ``name``."""
    out: dict[str, np.ndarray] = {}
    for path in sorted(cells.glob("*.json")) if cells.is_dir() else []:
        cell = json.loads(path.read_text())
        p, policies = cell["params"], cell["result"].get("policies", {})
        if p.get("catalog", {}).get("name") != name:
            continue
        if p.get("episodes") != episodes or p.get("eval_seed") != seed:
            continue
        out |= {label: np.asarray(v["profits"], dtype=float) for label, v in policies.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("instance")
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--against", default="bidprice,siloed:inventory=dp")
    ap.add_argument("--cells", type=Path, default=Path("results/scale/cells"))
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    inst = load_instance(args.instance)
    stream = {"episodes": args.episodes, "eval_seed": args.seed}
    known = _from_cells(args.cells, inst.name, args.episodes, args.seed)
    against = [a for a in args.against.split(",") if a]
    missing = [s for s in dict.fromkeys(args.specs + against) if s not in known]
    done = evaluate_all(inst, {s: s for s in missing}, stream)
    rows = known | {s: np.asarray(done[s]["profits"], dtype=float) for s in missing}
    for spec in dict.fromkeys(args.specs + against):
        print(f"{spec:48s} {rows[spec].mean():14,.1f} ± {ci_halfwidth(rows[spec]):,.1f}")
    for spec in args.specs:
        for other in (a for a in against if a != spec):
            d, ci = paired_ci(rows[spec], rows[other])
            pct = 100 * d / rows[other].mean()
            print(f"{spec} minus {other}: {d:+,.0f} ± {ci:,.0f} ({pct:+.2f}%)")


if __name__ == "__main__":
    main()
