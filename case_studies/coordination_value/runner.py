"""coordination-value: where does coordinating replenishment and recommendation pay?

One factor varies at a time around a base catalog: lead time (all products), the
recommendation uplift (rec/base attraction), the slate size, the margin and the demand
level. Each cell measures, on the same customers (common random numbers):

- the siloed firm (revenue-maximising slates + base stock), model-predictive control with
  the siloed slates fixed (inventory optimised around marketing's slates), and coordinated
  model-predictive control, simulated: the realised gain of coordination over the siloed
  slates with the same inventory logic (coordinated MPC - siloed-slate MPC), and the total
  gain over the siloed firm, each with a paired 95% interval;
- bid-price control, the strongest optimiser policy at this size, against the siloed firm
  (paired);
- the best siloed firm (``siloed:inventory=dp``: the siloed slates, each product's inventory
  run by its exact dynamic program under the demand those slates induce; docs/model.md), and
  bid-price control against it (paired): the value of coordination against the strongest
  firm without it. It runs in a cell of its own (``kind = "best-siloed"``) beside each main
  cell, on the same customers, re-simulating the siloed firm and bid-price control there for
  the pairing (both deterministic, so the same profits as the main cell's); the main cells'
  parameters, and so their cached results, are those of earlier runs;
- the fluid bounds with optimal coordinated decisions and with the siloed slates fixed:
  the structural value of coordination in the fluid model.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordopt.evaluation import compare, evaluate
from coordopt.generator import GeneratorConfig, generate_instance
from coordopt.instance import Instance
from coordopt.io import atomic_write_text, save_figure
from coordopt.policies import make_policy
from coordopt.simulator import SimParams
from coordopt.solvers.fluid import solve_fluid
from coordopt.text import table

FACTOR_LABELS = {
    "lead_time": "lead time (periods)",
    "uplift": "recommendation uplift (mean rec/base - 1)",
    "slate_size": "slate size K",
    "margin": "gross margin (1 - cost/price)",
    "demand": "demand level (x base arrivals)",
}


def vary(base: Instance, factor: str, level: float, config: dict[str, Any]) -> Instance:
    """The base catalog with one factor set to ``level``."""
    if factor == "lead_time":
        return base.replace(lead_time=np.full(base.n_products, int(level)))
    if factor == "uplift":
        return generate_instance(
            GeneratorConfig(**_sizes(config), uplift=float(level)), seed=config["base_seed"]
        )
    if factor == "slate_size":
        return base.replace(slate_size=int(level))
    if factor == "margin":
        cost = np.round(base.price * (1 - float(level)), 2)
        return base.replace(unit_cost=cost, salvage_value=np.minimum(base.salvage_value, cost))
    if factor == "demand":
        return base.replace(
            arrival_rate=base.arrival_rate * float(level),
            initial_inventory=np.round(base.initial_inventory * float(level)),
        )
    raise ValueError(f"unknown factor '{factor}'; known: {', '.join(FACTOR_LABELS)}")


def _sizes(config: dict[str, Any]) -> dict[str, Any]:
    return {k: int(config[k]) for k in ("n_products", "n_segments", "horizon", "slate_size")}


BEST_SILOED = "siloed:inventory=dp"
"""The best siloed firm (docs/model.md), measured in the cells of kind ``"best-siloed"``."""


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per factor, level and seed: the main cell (no ``kind``: its parameters are those of
    the runs before the best siloed firm, so their cached cells stay valid) and the best
    siloed firm's cell (``kind = "best-siloed"``), on the same catalog and customers."""
    out = []
    for f, levels in config["factors"].items():
        for lvl in levels:
            for s in config["seeds"]:
                main = {
                    "factor": f,
                    "level": lvl,
                    "seed": s,
                    **_sizes(config),
                    "episodes": config["episodes"],
                    "base_seed": config["base_seed"],
                    "eval_seed": config["eval_seed"],
                }
                out += [main, {**main, "kind": "best-siloed"}]
    return out


def _instance(p: dict[str, Any]) -> Instance:
    base = generate_instance(GeneratorConfig(**_sizes(p)), seed=p["base_seed"])
    return vary(base, p["factor"], p["level"], p)


def run_cell(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    if p.get("kind") == "best-siloed":
        return run_best_siloed_cell(p)
    if "kind" in p:
        raise ValueError(f"unknown cell kind {p['kind']!r}")
    inst = _instance(p)
    eval_seed = p["eval_seed"] * 1000 + p["seed"]
    params = SimParams.from_instance(inst, dtype=torch.float64)
    siloed = evaluate(params, "siloed", episodes=p["episodes"], seed=eval_seed)
    mpc_policy = make_policy("mpc", params, seed=p["seed"])
    mpc = evaluate(params, mpc_policy, episodes=p["episodes"], seed=eval_seed)
    mpc_siloed_policy = make_policy("mpc", params, seed=p["seed"], variant="siloed-slates")
    mpc_siloed = evaluate(params, mpc_siloed_policy, episodes=p["episodes"], seed=eval_seed)
    bidprice = evaluate(params, "bidprice", episodes=p["episodes"], seed=eval_seed)
    gain = compare(mpc, siloed)
    coord = compare(mpc, mpc_siloed)
    bid_gain = compare(bidprice, siloed)
    bound = solve_fluid(inst).result().bound
    bound_siloed = solve_fluid(inst, variant="siloed-slates").result().bound
    return {
        "siloed": siloed.mean,
        "siloed_ci": siloed.ci95,
        "mpc": mpc.mean,
        "mpc_ci": mpc.ci95,
        "mpc_siloed_slates": mpc_siloed.mean,
        "mpc_siloed_slates_ci": mpc_siloed.ci95,
        "gain": gain["mean"],
        "gain_ci": gain["ci95"],
        "gain_pct": 100 * gain["relative"],
        "coord_gain": coord["mean"],
        "coord_gain_ci": coord["ci95"],
        "coord_gain_pct": 100 * coord["relative"],
        "bidprice": bidprice.mean,
        "bidprice_ci": bidprice.ci95,
        "bidprice_gain_pct": 100 * bid_gain["relative"],
        "bidprice_gain_ci_pct": 100 * bid_gain["ci95"] / abs(siloed.mean),
        "fluid": bound,
        "fluid_siloed": bound_siloed,
        "fluid_gain_pct": 100 * (bound - bound_siloed) / abs(bound_siloed),
        "siloed_fill": float(siloed.fill_rate.mean()),
        "mpc_fill": float(mpc.fill_rate.mean()),
    }


def run_best_siloed_cell(p: dict[str, Any]) -> dict[str, Any]:
    """The best siloed firm, the siloed firm and bid-price control on the main cell's
    customers (its catalog and evaluation stream): the gain of bid-price control over the
    best siloed firm, and of the best siloed firm over the base-stock one, each paired."""
    inst = _instance(p)
    eval_seed = p["eval_seed"] * 1000 + p["seed"]
    params = SimParams.from_instance(inst, dtype=torch.float64)
    siloed = evaluate(params, "siloed", episodes=p["episodes"], seed=eval_seed)
    best_policy = make_policy(BEST_SILOED, params, seed=p["seed"])
    best = evaluate(params, best_policy, episodes=p["episodes"], seed=eval_seed)
    bidprice = evaluate(params, "bidprice", episodes=p["episodes"], seed=eval_seed)
    over_siloed = compare(best, siloed)
    bid_gain = compare(bidprice, best)
    programs: dict[str, Any] = getattr(best_policy, "report", dict)()  # states, postponed
    return {
        "best_siloed": best.mean,
        "best_siloed_ci": best.ci95,
        "best_siloed_vs_siloed_pct": 100 * over_siloed["relative"],
        "best_siloed_vs_siloed_ci_pct": 100 * over_siloed["ci95"] / abs(siloed.mean),
        "bidprice_vs_best_siloed_pct": 100 * bid_gain["relative"],
        "bidprice_vs_best_siloed_ci_pct": 100 * bid_gain["ci95"] / abs(best.mean),
        "best_siloed_fill": float(best.fill_rate.mean()),
        # products whose program postponed its orders (heuristic there, not the exact DP)
        "best_siloed_postponed_products": int(programs["postponed_products"]),
        "best_siloed_program_value": float(programs["program_value"]),
        "best_siloed_setup_seconds": float(programs["setup_seconds"]),
        # re-simulated for the pairing: the same customers as the main cell, the same profits
        "siloed": siloed.mean,
        "bidprice": bidprice.mean,
    }


BEST_SILOED_COLUMNS = (
    "best_siloed",
    "best_siloed_ci",
    "best_siloed_vs_siloed_pct",
    "best_siloed_vs_siloed_ci_pct",
    "bidprice_vs_best_siloed_pct",
    "bidprice_vs_best_siloed_ci_pct",
    "best_siloed_fill",
    "best_siloed_postponed_products",
)
"""The columns coordination_value.csv takes from the best siloed firm's cells."""


def merge(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per factor, level and seed: the main cell's results and the best siloed
    firm's columns (:data:`BEST_SILOED_COLUMNS`) from its cell."""
    best = {
        (r["params"]["factor"], r["params"]["level"], r["params"]["seed"]): r["result"]
        for r in results
        if r["params"].get("kind") == "best-siloed"
    }
    rows = []
    for r in results:
        p, v = r["params"], r["result"]
        if "kind" in p:
            continue
        b = best[(p["factor"], p["level"], p["seed"])]
        row = {"factor": p["factor"], "level": p["level"], "seed": p["seed"], **v}
        rows.append({**row, **{k: b[k] for k in BEST_SILOED_COLUMNS}})
    return rows


def report(results: list[dict[str, Any]], config: dict[str, Any], out: Path) -> Path:

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = merge(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "coordination_value.csv", buf.getvalue())

    factors = list(config["factors"])
    fig, axes = plt.subplots(1, len(factors), figsize=(3.6 * len(factors), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    lines = []
    for ax, f in zip(axes, factors, strict=True):
        sub = [r for r in rows if r["factor"] == f]
        levels = sorted({r["level"] for r in sub})
        sim = [np.mean([r["coord_gain_pct"] for r in sub if r["level"] == lv]) for lv in levels]
        err = [
            np.mean(
                [
                    100 * r["coord_gain_ci"] / abs(r["mpc_siloed_slates"])
                    for r in sub
                    if r["level"] == lv
                ]
            )
            for lv in levels
        ]
        flu = [np.mean([r["fluid_gain_pct"] for r in sub if r["level"] == lv]) for lv in levels]
        bid = [
            np.mean([r["bidprice_vs_best_siloed_pct"] for r in sub if r["level"] == lv])
            for lv in levels
        ]
        bid_err = [
            np.mean([r["bidprice_vs_best_siloed_ci_pct"] for r in sub if r["level"] == lv])
            for lv in levels
        ]
        ax.errorbar(
            levels,
            sim,
            yerr=err,
            marker="o",
            capsize=3,
            label="simulated: coordinated vs siloed-slate MPC (95% CI)",
        )
        ax.plot(levels, flu, marker="s", ls="--", label="fluid bound: coordinated vs siloed slates")
        ax.errorbar(
            levels,
            bid,
            yerr=bid_err,
            marker="^",
            ls=":",
            capsize=3,
            label="simulated: bid-price control vs best siloed firm (95% CI)",
        )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(FACTOR_LABELS[f])
        ax.grid(alpha=0.3)
        lines.append((f, levels, sim, flu, bid))
    axes[0].set_ylabel("profit gain of coordination (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=2,
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, -0.17),
    )
    fig.suptitle("Value of coordinating replenishment and recommendation")
    save_figure(fig, out / "coordination_value.png")

    body = [
        "# Case study: coordination-value",
        "",
        f"Base catalog: {config['n_products']} products, {config['n_segments']} segments, "
        f"{config['horizon']} periods, slate size {config['slate_size']} (generator seed "
        f"{config['base_seed']}); {config['episodes']} episodes per policy and cell, common random "
        f"numbers; seeds {config['seeds']}.",
        "",
        "Coordination gain = (coordinated MPC - MPC with the siloed slates fixed) / the latter: "
        "the same inventory logic, only the recommendations differ. Total gain = (coordinated "
        "MPC - siloed firm) / siloed firm, whose base-stock rule knows the season's end too; MPC "
        "plays the fluid plan, which holds no safety stock. Bid price = (bid-price control - "
        "siloed firm) / siloed firm: the strongest optimiser policy at this size. Best siloed "
        "firm = the siloed firm's slates with each product's inventory run by its exact "
        "dynamic program under the demand those slates induce (docs/model.md), the strongest "
        "firm without coordination; bid price vs best siloed = (bid-price control - best "
        "siloed firm) / best siloed firm, the value of coordination against it. Fluid gain = "
        "(fluid bound - fluid bound with the siloed slates fixed) / the latter. Intervals are "
        "paired 95% half-widths (common random numbers).",
        "",
        "```",
        table(
            [
                "factor",
                "level",
                "seed",
                "siloed firm",
                "MPC siloed slates",
                "coordinated MPC",
                "coordination gain %",
                "± (abs)",
                "total gain %",
                "bid price",
                "bid price vs siloed %",
                "best siloed firm",
                "bid price vs best siloed %",
                "fluid gain %",
            ],
            [
                [
                    r["factor"],
                    r["level"],
                    r["seed"],
                    r["siloed"],
                    r["mpc_siloed_slates"],
                    r["mpc"],
                    r["coord_gain_pct"],
                    r["coord_gain_ci"],
                    r["gain_pct"],
                    r["bidprice"],
                    f"{r['bidprice_gain_pct']:+.2f} ± {r['bidprice_gain_ci_pct']:.2f}",
                    r["best_siloed"],
                    f"{r['bidprice_vs_best_siloed_pct']:+.2f} ± "
                    f"{r['bidprice_vs_best_siloed_ci_pct']:.2f}",
                    r["fluid_gain_pct"],
                ]
                for r in rows
            ],
        ),
        "```",
        "",
        "![gain by factor](coordination_value.png)",
        "",
        "## Against the siloed firm",
        "",
        f"- Coordinated MPC minus the siloed firm: {min(r['gain_pct'] for r in rows):+.1f}% to "
        f"{max(r['gain_pct'] for r in rows):+.1f}% over the {len(rows)} cells "
        f"({sum(r['gain'] - r['gain_ci'] > 0 for r in rows)} above it beyond the interval, "
        f"{sum(r['gain'] + r['gain_ci'] < 0 for r in rows)} below it).",
        "- Bid-price control minus the siloed firm: {:+.1f}% to {:+.1f}% ({} above it beyond the "
        "interval, {} below it).".format(*_beyond(rows, "bidprice_gain_pct")),
        "",
        "MPC plays the fluid plan, which holds no safety stock; the siloed firm's base stock "
        "does, so where MPC's coordination gain is small the siloed firm earns more. Bid-price "
        "control orders up to the newsvendor level of the plan's demand as well. Runs before "
        "December 2026 compared with a siloed firm that also ordered in its last periods, "
        "orders that arrive after the season, and so showed MPC ahead of it in most cells "
        "(docs/findings-2026-11.md in the repository); against the season-aware firm that "
        "conclusion is reversed for MPC and holds for bid-price control.",
        "",
        *best_siloed_lines(rows),
        "",
        "## Where coordination matters most and least",
        "",
    ]
    for f, levels, sim, flu, bid in lines:
        hi, lo = int(np.argmax(sim)), int(np.argmin(sim))
        bhi, blo = int(np.argmax(bid)), int(np.argmin(bid))
        body.append(
            f"- {FACTOR_LABELS[f]}: largest simulated coordination gain {sim[hi]:.1f}% at {levels[hi]}, "
            f"smallest {sim[lo]:.1f}% at {levels[lo]} (fluid: {flu[hi]:.1f}% / {flu[lo]:.1f}%); "
            f"bid-price control over the best siloed firm: largest {bid[bhi]:+.1f}% at "
            f"{levels[bhi]}, smallest {bid[blo]:+.1f}% at {levels[blo]}."
        )
    return atomic_write_text(out / "report.md", "\n".join(body) + "\n")


def _beyond(rows: list[dict[str, Any]], key: str) -> tuple[float, float, int, int]:
    """Range of the paired gain ``key`` (percent) over the rows, and in how many rows it is
    above zero / below zero beyond its interval (``key`` with ``_ci`` before ``_pct``)."""
    ci = key.removesuffix("_pct") + "_ci_pct"
    vals = [r[key] for r in rows]
    return (
        min(vals),
        max(vals),
        sum(r[key] - r[ci] > 0 for r in rows),
        sum(r[key] + r[ci] < 0 for r in rows),
    )


def best_siloed_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The report's section on the best siloed firm: bid-price control against it, and how
    that compares with bid-price control against the base-stock siloed firm."""
    lo, hi, above, below = _beyond(rows, "bidprice_vs_best_siloed_pct")
    blo, bhi, babove, bbelow = _beyond(rows, "bidprice_gain_pct")
    slo, shi, sabove, sbelow = _beyond(rows, "best_siloed_vs_siloed_pct")
    smaller = sum(r["bidprice_vs_best_siloed_pct"] < r["bidprice_gain_pct"] for r in rows)
    postponed = [r for r in rows if r["best_siloed_postponed_products"] > 0]
    n = len(rows)
    out = [
        "## Against the best siloed firm",
        "",
        f"- Bid-price control minus the best siloed firm: {lo:+.1f}% to {hi:+.1f}% over the {n} "
        f"cells ({above} of {n} above it beyond the interval, {below} below it); mean "
        f"{np.mean([r['bidprice_vs_best_siloed_pct'] for r in rows]):+.2f}%.",
        f"- Against the base-stock siloed firm the same policy gains {blo:+.1f}% to {bhi:+.1f}% "
        f"({babove} of {n} above it beyond the interval, {bbelow} below it; mean "
        f"{np.mean([r['bidprice_gain_pct'] for r in rows]):+.2f}%): the gain over the best "
        f"siloed firm is the smaller in {smaller} of {n} cells.",
        f"- Best siloed firm minus the base-stock siloed firm (the same slates; exact "
        f"per-product inventory programs instead of base stock): {slo:+.1f}% to {shi:+.1f}% "
        f"({sabove} of {n} above it beyond the interval, {sbelow} below it).",
    ]
    if postponed:
        worst = max(r["best_siloed_postponed_products"] for r in postponed)
        out.append(
            f"- In {len(postponed)} of {n} cells some products' programs exceeded the state "
            f"limit and ordered with postponed decisions (heuristic there; at most {worst} "
            "products in a cell): there the best siloed firm may fall short of its optimum."
        )
    else:
        out.append(
            "- Every product's program was solved exactly in every cell (no postponed orders)."
        )
    return out
