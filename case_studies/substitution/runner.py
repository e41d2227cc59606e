"""substitution: when a product runs short, where does the optimiser move its demand?

For every product, at a representative state (the middle period, every product in stock), the
optimiser decides again without that product's stock; the demand it moves to every other
product is a weighted edge of the substitution network (``coordopt insights --network``,
:mod:`coordopt.insights.network`: the exact DP or MPC where they fit, the catalog solver's
stock values beyond). Each cell measures, on one catalog:

- the time to derive the network (and the machine's load, which is shared);
- the products that back up the most demand, the Louvain communities and their agreement
  with the catalog's categories: the adjusted Rand index (at the study's resolution and at
  modularity's own, 1), and the share of the moved demand that stays within a category
  against the share a random target would give;
- on the catalog the agents are trained on, how much of the network's demand shift the
  warm-started agents reproduce when the product runs short in simulation.

Catalogs: generated ones with planted categories (``coordopt generate --clusters C``: every
segment favours one category) at 50, 500 and 2,000 products, each also with the planted
tastes switched off (the same labels, ``--cluster-affinity 0``: a control whose index should
be near 0); and Ta-Feng catalogs of 500 products (``coordopt calibrate tafeng``) whose
categories are the PRODUCT_SUBCLASS, with age segments and with age x area segments.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import numpy as np

from coordopt.calibrate import CalibrationConfig, calibrate_tafeng
from coordopt.case_studies.common import to_csv, train_agents
from coordopt.generator import GeneratorConfig, generate_instance
from coordopt.insights.network import (
    agents_agreement,
    analyse_network,
    build_network,
    optimiser_response,
    plot_network,
    simulated_response,
    write_network,
)
from coordopt.instance import Instance
from coordopt.io import atomic_write_text, save_figure
from coordopt.text import table

# --------------------------------------------------------------------------- catalogs


@functools.cache
def _tafeng(
    products: int, segments: Literal["age", "age-area"], train_weeks: int, uplift: float
) -> Instance:
    cfg = CalibrationConfig(
        products=products, segments=segments, train_weeks=train_weeks, uplift=uplift
    )
    return calibrate_tafeng(cfg).instance()


def catalog(p: dict[str, Any]) -> Instance:
    """The cell's catalog: generated with planted categories, or calibrated from Ta-Feng."""
    if p["catalog"] == "tafeng":
        return _tafeng(p["products"], p["segments"], p["train_weeks"], p["uplift"])
    cfg = GeneratorConfig(
        n_products=p["products"],
        n_segments=p["segments"],
        horizon=p["horizon"],
        slate_size=p["slate_size"],
        clusters=p["clusters"],
        cluster_affinity=p["affinity"],
    )
    kind = "planted" if p["affinity"] > 0 else "labels-only"
    return generate_instance(cfg, seed=p["seed"], name=f"{kind}-{p['products']}")


def label(p: dict[str, Any]) -> str:
    """A short, file-safe name of the cell's catalog."""
    if p["catalog"] == "tafeng":
        return f"tafeng-{p['products']}-{p['segments']}"
    kind = "planted" if p["affinity"] > 0 else "labels-only"
    return f"{kind}-{p['products']}"


# --------------------------------------------------------------------------- grid


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    shared = {k: config[k] for k in ("resolution", "network_seed", "agent_episodes")}
    out: list[dict[str, Any]] = []
    for c in config["planted"]:
        for affinity in config["affinities"]:
            agents = affinity > 0 and c["products"] == config["agent_products"]
            out.append(
                {
                    "catalog": "planted",
                    **c,
                    "affinity": affinity,
                    "horizon": config["horizon"],
                    "seed": config["seed"],
                    "agent_method": config["agent_method"] if agents else None,
                    "agent_iterations": config["agent_iterations"] if agents else 0,
                    **shared,
                }
            )
    for c in config["tafeng"]:
        out.append(
            {
                "catalog": "tafeng",
                **c,
                "train_weeks": config["train_weeks"],
                "uplift": config["uplift"],
                "agent_method": None,
                "agent_iterations": 0,
                **shared,
            }
        )
    return out


def run_cell(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    inst = catalog(p)
    load = os.getloadavg()[0]
    began = time.perf_counter()
    response = optimiser_response(inst, "fluid", seed=p["network_seed"])
    seconds = time.perf_counter() - began
    graph = build_network(inst, response)
    agreement, agent_info = None, {}
    if p["agent_iterations"]:
        run, agent_info = train_agents(
            inst, p["agent_method"], p["network_seed"], p["agent_iterations"], workdir
        )
        agents = simulated_response(
            inst,
            str(run),
            np.unique(response.edge_source),
            response.period,
            episodes=p["agent_episodes"],
            seed=p["network_seed"],
        )
        agreement = agents_agreement(response, agents)
    coarse = analyse_network(graph, seed=p["network_seed"], resolution=1.0)
    summary = analyse_network(
        graph, seed=p["network_seed"], resolution=p["resolution"], agreement=agreement
    )
    write_network(graph, summary, workdir / "network")
    categories = inst.category or ()
    return {
        "name": inst.name,
        "products": inst.n_products,
        "segments": inst.n_segments,
        "periods": inst.horizon,
        "slate_size": inst.slate_size,
        "categories": len(set(categories)),
        "method": response.method,
        "period": response.period + 1,
        "network_seconds": seconds,
        "load": load,
        "cpus": os.cpu_count(),
        "edges": summary["n_edges"],
        "covered": summary["covered"],
        "sources": len(response.sources),
        "demand_moved": summary["demand_moved"],
        "communities": len(summary["communities"]),
        "largest_community": max((len(c) for c in summary["communities"]), default=0),
        "modularity": summary["modularity"],
        "category_ari": summary["category_ari"],
        "category_ari_resolution_1": coarse["category_ari"],
        "category_share": summary["category_share"],
        "category_share_random": summary["category_share_random"],
        "agents_agreement": agreement,
        **{f"agent_{k}": v for k, v in agent_info.items()},
        "backups": summary["backups"][:5],
        "network": str(workdir / "network"),
    }


# --------------------------------------------------------------------------- report


def _fmt(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def report(results: list[dict[str, Any]], config: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        {"catalog": label(r["params"]), **r["result"], "cell_seconds": r["seconds"]}
        for r in results
    ]
    atomic_write_text(out / "substitution.csv", to_csv(rows))
    backups = [
        {"catalog": row["catalog"], "rank": j + 1, **b}
        for row in rows
        for j, b in enumerate(row["backups"])
    ]
    atomic_write_text(out / "backups.csv", to_csv(backups))
    figures = []
    for row in rows:  # drawn from each cell's graph (its work folder), the controls left out
        graph = Path(row["network"]) / "network.graphml"
        if graph.is_file() and not row["catalog"].startswith("labels-only"):
            name = f"network_{row['catalog']}.png"
            plot_network(nx.read_graphml(graph), out / name)
            figures.append((row["catalog"], name))

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    x = np.arange(len(rows))
    ari = [np.nan if r["category_ari"] is None else r["category_ari"] for r in rows]
    ari1 = [
        np.nan if r["category_ari_resolution_1"] is None else r["category_ari_resolution_1"]
        for r in rows
    ]
    ax.bar(x - 0.2, ari, 0.4, label=f"resolution {config['resolution']:g}")
    ax.bar(x + 0.2, ari1, 0.4, label="resolution 1")
    ax.axhline(0.9, color="grey", ls="--", lw=0.8)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(x, [r["catalog"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("adjusted Rand index\n(communities vs categories)")
    ax.set_title("Do the substitution communities follow the categories?")
    ax.legend(fontsize=8, frameon=False)
    save_figure(fig, out / "category_ari.png")

    planted = [r for r in rows if r["catalog"].startswith("planted")]
    control = [r for r in rows if r["catalog"].startswith("labels-only")]
    tafeng = [r for r in rows if r["catalog"].startswith("tafeng")]
    largest = max(rows, key=lambda r: r["products"])
    body = [
        "# Case study: substitution",
        "",
        "When a product runs short, where does the optimiser move its demand? At a representative "
        "state (the middle period, every product in stock) each product in turn loses its stock and "
        "the optimiser decides again; the expected demand per period that moves to every other "
        "product is a weighted edge of the substitution network (`coordopt insights INSTANCE "
        "--network`; method: the exact DP or MPC where they fit, the catalog solver's stock values "
        "with the bid-price rule beyond). Communities: Louvain (networkx, seed "
        f"{config['network_seed']}) at resolution {config['resolution']:g} on the network with "
        "both directions summed; agreement with the categories: the adjusted Rand index over the "
        "products with an edge (1: the same partition, 0: no more alike than chance), and the share "
        "of the moved demand that stays in its source's category against the share random targets "
        "would give.",
        "",
        f"Planted catalogs (`coordopt generate --clusters C`, seed {config['seed']}, "
        f"{config['horizon']} periods): every segment favours one category (utility bonus "
        f"{max(config['affinities']):g}); the labels-only controls have the same labels and sizes "
        "with the bonus at 0. Ta-Feng catalogs: `coordopt calibrate tafeng` (categories = "
        f"PRODUCT_SUBCLASS; {config['train_weeks']} training weeks, uplift {config['uplift']:g} assumed).",
        "",
        "```",
        table(
            [
                "catalog",
                "N",
                "M",
                "K",
                "categories",
                "method",
                "seconds",
                "load",
                "edges",
                "covered",
                "communities",
                "ARI",
                "ARI res 1",
                "in-category",
                "random",
                "agents",
            ],
            [
                [
                    r["catalog"],
                    r["products"],
                    r["segments"],
                    r["slate_size"],
                    r["categories"],
                    r["method"],
                    f"{r['network_seconds']:.1f}",
                    f"{r['load']:.1f}",
                    r["edges"],
                    r["covered"],
                    r["communities"],
                    _fmt(r["category_ari"]),
                    _fmt(r["category_ari_resolution_1"]),
                    _fmt(r["category_share"]),
                    _fmt(r["category_share_random"]),
                    _fmt(r["agents_agreement"]),
                ]
                for r in rows
            ],
        ),
        "```",
        "",
        "seconds: deriving the network (the optimiser's solve included), on this machine "
        f"({largest['cpus']} CPU cores shared with other work; load: the 1-minute load average "
        "when the cell started). covered: products that move or take demand. in-category / "
        "random: share of the moved demand that stays in the source's category, and that share "
        "for random targets. agents: share of the network's demand shift the warm-started agents "
        "reproduce when the product runs short in simulation (`agents_agreement`).",
        "",
        "![category agreement](category_ari.png)",
        "",
        "## Findings",
        "",
    ]
    for r in planted:
        body.append(
            f"- {r['catalog']} ({r['categories']} planted categories, {r['segments']} segments): "
            f"the communities recover the categories with ARI {_fmt(r['category_ari'])} "
            f"(resolution 1: {_fmt(r['category_ari_resolution_1'])}); "
            f"{100 * (r['category_share'] or 0):.1f}% of the moved demand stays in its category "
            f"(random targets: {100 * (r['category_share_random'] or 0):.1f}%)."
        )
    for r in control:
        body.append(
            f"- {r['catalog']} (the same labels, no planted tastes): ARI "
            f"{_fmt(r['category_ari'])}, in-category share {100 * (r['category_share'] or 0):.1f}% "
            f"(random: {100 * (r['category_share_random'] or 0):.1f}%): nothing where nothing is planted."
        )
    body.append(
        f"- Time at {largest['products']:,} products ({largest['segments']} segments, "
        f"{largest['periods']} periods): {largest['network_seconds']:.0f} s to derive the network "
        f"({largest['method']}), at a load average of {largest['load']:.1f} on "
        f"{largest['cpus']} cores."
    )
    for r in planted + control:
        if r["agents_agreement"] is not None:
            body.append(
                f"- Agents ({r.get('agent_iterations', config['agent_iterations'])} iteration(s), "
                f"warm-started, on {r['catalog']}): they reproduce "
                f"{100 * r['agents_agreement']:.1f}% of the network's demand shift when a product "
                "runs short in simulation."
            )
    for r in tafeng:
        ari, share, chance = r["category_ari"], r["category_share"], r["category_share_random"]
        follows = ari is not None and ari >= 0.5
        lean = (
            f"{100 * share:.1f}% of the moved demand stays within a subclass, "
            f"{share / chance:.0f}x the {100 * chance:.1f}% random targets would give"
            if share is not None and chance
            else "no demand moves"
        )
        shape = (
            "the communities it forms follow them"
            if follows
            else f"the communities it forms are not the subclasses: {r['communities']} "
            f"communities (the largest {r['largest_community']} products) over {r['covered']} "
            f"products against {r['categories']} subclasses"
        )
        body.append(
            f"- **Ta-Feng** ({r['catalog']}: {r['products']} products, {r['segments']} segments): "
            f"the substitution communities {'follow' if follows else 'do not follow'} "
            f"PRODUCT_SUBCLASS, ARI {_fmt(ari)} (resolution 1: "
            f"{_fmt(r['category_ari_resolution_1'])}). Substitution leans towards the same "
            f"subclass ({lean}), but {shape}."
        )
    body += [
        "",
        "## The networks",
        "",
        "The largest communities of each network (the labels-only controls are in the tables "
        "only), nodes sized by the demand they back up, legends with each community's main "
        "category.",
        "",
    ]
    for name, fig_name in figures:
        body += [f"### {name}", "", f"![{name}]({fig_name})", ""]
    body += [
        "Top backups per catalog (the products whose weighted in-degree -- demand they take when "
        "others run short -- is largest) are in `backups.csv`; every cell's numbers in "
        "`substitution.csv`.",
        "",
    ]
    return atomic_write_text(out / "report.md", "\n".join(body))
