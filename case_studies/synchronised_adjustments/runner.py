"""synchronised-adjustments: do the optimiser and the agents move recommendations with stock?

For each source -- the fluid plan, the exact DP policy (``tiny``), MPC, the siloed firm and
the trained agents (warm-started and cold) -- the six patterns of
:data:`coordopt.insights.PATTERNS` are measured (bootstrap 95% intervals for simulated
sources), each against its expected sign under coordination, together with an alignment
score: how closely the source's recommendation intensities and orders follow the
optimiser's: :func:`coordopt.solvers.dp.reference_method`, the rule the ``insights``
command and the warm start share (the DP policy where the DP fits, the fluid plan
elsewhere). The tables come from :mod:`coordopt.insights.report`, as the command's do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coordopt import insights
from coordopt.case_studies.common import RL_METHODS, to_csv, train_agents
from coordopt.insights import PATTERNS
from coordopt.insights.report import pattern_legend, pattern_table
from coordopt.instance import load_instance
from coordopt.io import atomic_write_text, save_figure
from coordopt.solvers.dp import reference_method
from coordopt.text import table


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("episodes", "iterations", "bootstrap", "seed")
    return [{**src, **{k: config[k] for k in keys}} for src in config["sources"]]


def _data(inst: Any, source: str, p: dict[str, Any], workdir: Path) -> Any:

    if source == "fluid":
        return insights.fluid_plan(inst)
    name = source
    if source in RL_METHODS:
        run, _ = train_agents(inst, source, p["seed"], p["iterations"], workdir)
        name = str(run)
    return insights.simulate(inst, name, episodes=p["episodes"], seed=p["seed"] + 99)


def run_cell(p: dict[str, Any], workdir: Path) -> dict[str, Any]:

    inst = load_instance(p["instance"])
    data = _data(inst, p["source"], p, workdir)
    baseline = insights.simulate(
        inst, "siloed", episodes=max(p["episodes"], 2), seed=p["seed"] + 99
    )
    metrics = insights.insight_metrics(
        data, baseline=baseline, n_boot=p["bootstrap"], seed=p["seed"]
    )
    ref_name = reference_method(inst)
    reference = _data(inst, ref_name, p, workdir) if p["source"] != ref_name else data
    align = insights.alignment_score(data, reference)
    intensity = data.product_intensity.mean(axis=1)
    return {
        "metrics": metrics["metrics"],
        "alignment": align,
        "reference": ref_name,
        "intensity": intensity.tolist(),
        "cover": data.cover.mean(axis=1).tolist(),
    }


def report(results: list[dict[str, Any]], config: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    body = [
        "# Case study: synchronised-adjustments",
        "",
        f"Simulated sources: {config['episodes']} episodes (bootstrap 95% intervals, "
        f"{config['bootstrap']} resamples); agents trained {config['iterations']} iterations, seed "
        f"{config['seed']}. ✓ = the sign expected under coordination, ✗ = the opposite sign, · = exactly zero "
        "(no movement at all, e.g. static slates); n/a = undefined (too few products or no scarce "
        "product).",
        "",
    ]
    body += pattern_legend()
    body.append("")
    rows = []
    for inst_name in dict.fromkeys(r["params"]["instance"] for r in results):
        mine = [r for r in results if r["params"]["instance"] == inst_name]
        measured = [{"source": r["params"]["source"], **r["result"]} for r in mine]
        align = [
            [
                r["params"]["source"],
                r["result"]["reference"],
                r["result"]["alignment"]["intensity_corr"],
                r["result"]["alignment"]["intensity_mae"],
                r["result"]["alignment"]["orders_corr"],
                r["result"]["alignment"]["orders_rel_l1"],
            ]
            for r in mine
        ]
        for r in mine:
            rows.append(
                {
                    "instance": inst_name,
                    "source": r["params"]["source"],
                    **{k: r["result"]["metrics"][k]["value"] for k in PATTERNS},
                    **{f"align_{k}": v for k, v in r["result"]["alignment"].items()},
                }
            )
        body += [
            f"## {inst_name}",
            "",
            *pattern_table(measured, mark=True),
            "",
            "Alignment with the optimiser (intensity correlation, mean absolute intensity difference, "
            "orders correlation, relative L1 distance of orders):",
            "",
            "```",
            table(
                [
                    "source",
                    "reference",
                    "intensity corr",
                    "intensity MAE",
                    "orders corr",
                    "orders rel. L1",
                ],
                align,
            ),
            "```",
            "",
        ]
        # recommendation intensity against stock cover over time, for a few products
        k = min(config["products_to_plot"], len(mine[0]["result"]["intensity"][0]))
        fig, axes = plt.subplots(
            len(mine), k, figsize=(3.4 * k, 2.3 * len(mine)), squeeze=False, sharex=True
        )
        for si, r in enumerate(mine):
            inten, cover = np.array(r["result"]["intensity"]), np.array(r["result"]["cover"])
            order = np.argsort(-inten.mean(0))[:k]
            for pi, i in enumerate(order):
                ax = axes[si, pi]
                ax.plot(inten[:, i], color="tab:blue", label="recommendation intensity")
                ax.set_ylim(-0.05, 1.05)
                ax2 = ax.twinx()
                ax2.plot(cover[:, i], color="tab:orange", ls="--", label="stock cover")
                ax.set_title(f"{r['params']['source']}: product {i + 1}", fontsize=8)
                if pi == 0:
                    ax.set_ylabel("intensity (share)", fontsize=8)
                ax2.set_ylabel("cover (periods)", fontsize=8)
                if si == len(mine) - 1:
                    ax.set_xlabel("period")
        handles = [axes[0, 0].lines[0], axes[0, 0].figure.axes[-1].lines[0]]
        fig.legend(
            handles,
            ["recommendation intensity (left axis)", "stock cover, periods (right axis)"],
            loc="upper center",
            ncol=2,
            fontsize=8,
            bbox_to_anchor=(0.5, 1.02),
        )
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        name = f"intensity_cover_{inst_name}.png"
        save_figure(fig, out / name)
        body += [f"![intensity and cover over time, {inst_name}]({name})", ""]
    atomic_write_text(out / "synchronised_adjustments.csv", to_csv(rows))
    return atomic_write_text(out / "report.md", "\n".join(body) + "\n")
