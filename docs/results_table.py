"""The README's results table, generated from the case studies' committed CSV files.

One row per study: the question it answers, its headline figure, the same against the
season-aware siloed firm, and a link to its report. ``python docs/results_table.py`` prints
the table; ``--write`` puts it between the README's ``results-table`` markers; ``--check``
exits 1 when the README and the CSV files disagree (``tests/test_results_table.py`` runs it).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- results-table:begin -->", "<!-- results-table:end -->"

Rows = list[dict[str, str]]


def read(study: str, name: str) -> Rows:
    with open(RESULTS / study / name, newline="") as f:
        return list(csv.DictReader(f))


def num(row: dict[str, str], key: str) -> float:
    value = row.get(key, "")
    return float(value) if value not in ("", None) else math.nan


def pct_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.1f}%" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}–{hi:.1f}%"


def signed_pct(value: float) -> str:
    return f"{value:+.1f}%"


def pick(rows: Rows, **where: str) -> Rows:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


# --------------------------------------------------------------------------- one row a study


def exact_benchmark() -> tuple[str, str, str]:
    rows = read("exact-benchmark", "exact_benchmark.csv")
    variants = sorted({r["variant"] for r in rows})
    agents = [num(r, "pct_of_optimum") for r in pick(rows, method="rl-multi-warm")]
    mpc = [num(r, "pct_of_optimum") for r in pick(rows, method="mpc")]
    siloed = [num(r, "pct_of_optimum") for r in pick(rows, method="siloed")]
    dp = pick(rows, method="dp")  # a bound as a % of the optimum: bound x pct / mean

    def of_optimum(r: dict[str, str], key: str) -> float:
        return num(r, key) * num(r, "pct_of_optimum") / num(r, "mean")

    stochastic = [of_optimum(r, "stochastic_bound") for r in dp if r["stochastic_bound"]]
    fluid = [of_optimum(r, "fluid_bound") for r in dp]
    return (
        "How close does each method get to the true (DP) optimum on tiny instances?",
        f"warm-started multi-timescale agents {pct_range(agents)} of the optimum on "
        f"{len(variants)} variants; fluid MPC {pct_range(mpc)}; upper bounds: stochastic "
        f"{pct_range(stochastic)} of the optimum, fluid {pct_range(fluid)}",
        f"siloed firm {pct_range(siloed)} of the optimum",
    )


def coordination_value() -> tuple[str, str, str]:
    rows = read("coordination-value", "coordination_value.csv")
    coord = [num(r, "coord_gain_pct") for r in rows]
    total = [num(r, "gain_pct") for r in rows]
    bid = [num(r, "bidprice_gain_pct") for r in rows]
    vs_best = [num(r, "bidprice_vs_best_siloed_pct") for r in rows]
    above = sum(
        num(r, "bidprice_vs_best_siloed_pct") > num(r, "bidprice_vs_best_siloed_ci_pct")
        for r in rows
    )
    best = max(rows, key=lambda r: num(r, "coord_gain_pct"))
    return (
        "When does coordinating slates with stock pay (one factor at a time)?",
        f"coordinated MPC vs MPC with the siloed slates: {signed_pct(min(coord))} to "
        f"{signed_pct(max(coord))}, largest at {best['factor']} = {best['level']}",
        f"coordinated MPC {signed_pct(min(total))} to {signed_pct(max(total))}; bid-price "
        f"control {signed_pct(min(bid))} to {signed_pct(max(bid))}; against the best siloed "
        f"firm {signed_pct(min(vs_best))} to {signed_pct(max(vs_best))} (above it beyond the "
        f"interval in {above} of {len(rows)} cells)",
    )


def synchronised_adjustments() -> tuple[str, str, str]:
    rows = read("synchronised-adjustments", "synchronised_adjustments.csv")
    mpc = pick(rows, instance="small", source="mpc")[0]
    warm = pick(rows, instance="small", source="rl-multi-warm")[0]
    return (
        "Do recommendations move with stock, for the optimiser and the agents?",
        f"on small, slate intensity vs stock cover: MPC r = {num(mpc, 'intensity_cover_corr'):+.2f}, "
        f"warm agents r = {num(warm, 'intensity_cover_corr'):+.2f}; the agents' slate intensity "
        f"follows the optimiser's plan, r = {num(warm, 'align_intensity_corr'):.2f}",
        f"cover of the recommended products in the run-down, minus the siloed firm's: MPC "
        f"{num(mpc, 'end_cover_vs_siloed'):+.2f}, agents {num(warm, 'end_cover_vs_siloed'):+.2f}",
    )


def timescales() -> tuple[str, str, str]:
    rows = read("timescales", "timescales.csv")
    best = max(rows, key=lambda r: num(r, "final_mean"))
    rest = ", ".join(
        f"{r['config']} {num(r, 'final_mean'):,.0f} (sd {num(r, 'final_sd'):,.0f})"
        for r in rows
        if r is not best
    )
    return (
        "Is learning on two timescales faster or more stable (cold start, small)?",
        f"best: {best['config']} {num(best, 'final_mean'):,.0f} (sd {num(best, 'final_sd'):,.0f} "
        f"over {best['seeds']} seeds); {rest}",
        "—",
    )


def policy_label(spec: str) -> str:
    """A policy's spec in words (its options are in the report)."""
    names = {"siloed:inventory=dp": "best siloed firm", "lagrangian": "decomposition policy"}
    return next((v for k, v in names.items() if spec.startswith(k)), spec)


def scale() -> tuple[str, str, str]:
    """Per catalog: the best policy as a fraction of the tighter of the two bounds (fluid,
    stochastic); against the best siloed firm (``siloed:inventory=dp``, the strongest
    siloed baseline): the best coordinated policy and the agents, paired."""
    rows = read("scale", "scale.csv")
    parts, versus = [], []

    def mean(r: dict[str, str]) -> float:
        return num(r, "mean")

    for catalog in dict.fromkeys(r["catalog"] for r in rows):
        here = pick(rows, catalog=catalog)
        best = max(here, key=mean)
        which = "stochastic" if num(best, "tighter_bound") < num(best, "bound") else "fluid"
        parts.append(
            f"{catalog}: {policy_label(best['policy'])} "
            f"{100 * num(best, 'fraction_of_tighter_bound'):.1f}% "
            f"of the {which} bound"
        )
        base = next(r for r in here if r["policy"].startswith("siloed:inventory=dp"))
        coordinated = [r for r in here if not r["policy"].startswith(("siloed", "agents"))]
        agents = [r for r in here if r["policy"].startswith("agents")]
        for r in [max(coordinated, key=mean)] + ([max(agents, key=mean)] if agents else []):
            d, ci = (
                100 * num(r, k) / mean(base)
                for k in ("diff_vs_best_siloed", "diff_vs_best_siloed_ci")
            )
            versus.append(f"{catalog}: {policy_label(r['policy'])} {signed_pct(d)} (± {ci:.1f}%)")
    return (
        "How do the solvers, policies and agents hold up at 1,000 and 10,000 products?",
        "; ".join(parts),
        "against the best siloed firm (`siloed:inventory=dp`): " + "; ".join(versus),
    )


def peers() -> tuple[str, str, str]:
    rows = read("peers", "peers.csv")
    parts, versus = [], []
    for inst in dict.fromkeys(r["instance"] for r in rows):
        warm = pick(rows, instance=inst, method="rl-multi-warm")[0]
        peer = max(
            (r for r in pick(rows, instance=inst) if r["method"] in ("mappo", "ippo")),
            key=lambda r: num(r, "mean"),
        )
        siloed = pick(rows, instance=inst, method="siloed")[0]
        parts.append(
            f"{inst}: warm agents {num(warm, 'pct_of_reference'):.1f}% of the reference, "
            f"best TorchRL peer ({peer['method']}) {num(peer, 'pct_of_reference'):.1f}%"
        )
        versus.append(
            f"{inst}: warm agents {signed_pct(100 * num(warm, 'vs_siloed') / num(siloed, 'mean'))} "
            f"(± {100 * num(warm, 'vs_siloed_ci95') / num(siloed, 'mean'):.1f}%)"
        )
    return (
        "Do coordopt's agents learn better than TorchRL's MAPPO and IPPO at equal budgets?",
        "; ".join(parts),
        "; ".join(versus),
    )


def tafeng() -> tuple[str, str, str]:
    rows = read("tafeng", "tafeng.csv")
    real = [r for r in rows if r["catalog"] != "synthetic"]
    gains = [num(r, "fluid_gain_pct") for r in real]
    versus = []
    for r in real:
        measured = [m for m in ("mpc", "bidprice") if not math.isnan(num(r, f"{m}_vs_siloed_pct"))]
        if measured:
            best = max(measured, key=lambda m: num(r, m))
            line = (
                f"{r['products']} products: {best} {signed_pct(num(r, f'{best}_vs_siloed_pct'))} "
                f"(± {num(r, f'{best}_vs_siloed_ci_pct'):.1f}%)"
            )
            if not math.isnan(vs_best := num(r, f"{best}_vs_best_siloed_pct")):
                ci = num(r, f"{best}_vs_best_siloed_ci_pct")
                line += f", against the best siloed firm {signed_pct(vs_best)} (± {ci:.1f}%)"
            versus.append(line)
    return (
        "Does coordination pay on a real assortment (Ta-Feng grocery data)?",
        f"fluid gain of coordination {signed_pct(min(gains))} to {signed_pct(max(gains))} on "
        f"{len(real)} real catalogs",
        "; ".join(versus),
    )


def substitution() -> tuple[str, str, str]:
    rows = read("substitution", "substitution.csv")
    planted = [r for r in rows if r["catalog"].startswith("planted")]
    unplanted = [r for r in rows if r["catalog"].startswith("labels-only")]
    real = [r for r in rows if r["catalog"].startswith("tafeng")]
    biggest = max(rows, key=lambda r: int(r["products"]))
    ari = [num(r, "category_ari") for r in planted]
    return (
        "When stock runs short, which products stand in for which, and do those groups follow "
        "the categories?",
        f"planted categories recovered with adjusted Rand index {min(ari):.2f}–{max(ari):.2f} "
        f"({', '.join(r['products'] for r in planted)} products; "
        f"{max(abs(num(r, 'category_ari')) for r in unplanted):.2f} at most without planted "
        f"structure); Ta-Feng subclasses: {max(num(r, 'category_ari') for r in real):.2f}; "
        f"{biggest['products']} products in {num(biggest, 'network_seconds'):.0f} s",
        "—",
    )


STUDIES: dict[str, tuple[Callable[[], tuple[str, str, str]], str]] = {
    "exact-benchmark": (exact_benchmark, "exact-benchmark/report.md"),
    "coordination-value": (coordination_value, "coordination-value/report.md"),
    "synchronised-adjustments": (synchronised_adjustments, "synchronised-adjustments/report.md"),
    "timescales": (timescales, "timescales/report.md"),
    "scale": (scale, "scale/report.md"),
    "peers": (peers, "peers/report.md"),
    "tafeng": (tafeng, "tafeng/report.md"),
    "substitution": (substitution, "substitution/report.md"),
}
"""Study -> (its row from its CSV, its report under docs/results/)."""


def table() -> str:
    lines = [
        "| study | question | headline | against the siloed firms | report |",
        "|---|---|---|---|---|",
    ]
    for study, (row, report) in STUDIES.items():
        question, headline, versus = row()
        lines.append(
            f"| `{study}` | {question} | {headline} | {versus} | [report](docs/results/{report}) |"
        )
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """The table between the README's markers."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{README}: the markers {BEGIN} and {END} are missing")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def write(text: str) -> str:
    """``text`` (the README) with the generated table between its markers."""
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="update the README's table")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README disagrees")
    args = parser.parse_args(argv)
    if args.write:
        README.write_text(write(README.read_text()))
    elif args.check:
        if readme_table(README.read_text()) != table():
            print(
                "README.md: the results table differs from docs/results/*.csv; "
                "run python docs/results_table.py --write",
                file=sys.stderr,
            )
            return 1
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
