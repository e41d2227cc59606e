"""scale: does coordopt run at catalog scale, and what do the agents earn there?

For each catalog (the bundled ``large``: 1,000 products x 100 segments, and a generated
10,000-product catalog): simulator throughput, training throughput of the multi-timescale
agents, and the profit of agents warm-started and trained on a small instance and applied
unchanged to the large catalog (their networks are shared across products and segments)
against the siloed firm, on the same customers, and against the fluid upper bound from
the Lagrangian decomposition where it is computed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from coordopt.case_studies.common import to_csv
from coordopt.evaluation import compare, evaluate
from coordopt.generator import generate_instance
from coordopt.instance import Instance, load_instance
from coordopt.io import atomic_write_text, save_figure
from coordopt.machine import machine
from coordopt.policies import SiloedPolicy, make_policy
from coordopt.rl.config import TrainConfig
from coordopt.rl.ppo import train
from coordopt.rl.runs import train_agents
from coordopt.simulator import SimParams, reset, step
from coordopt.solvers.catalog import solve_catalog
from coordopt.text import table


def catalog(spec: dict[str, Any]) -> Instance:
    """A bundled instance by name, or a generated one (``n_products``, ``n_segments``, ``horizon``).

    Per-catalog options: ``train_envs`` (environments of the training-throughput cell) and
    ``decompose`` (whether to compute the decomposition bound) override the grid's defaults.
    """
    if "n_products" not in spec:
        return load_instance(spec["name"])

    return generate_instance(
        seed=1,
        name=spec["name"],
        n_products=spec["n_products"],
        n_segments=spec["n_segments"],
        horizon=spec["horizon"],
        slate_size=5,
    )


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    shared = {k: config[k] for k in ("eval_seed", "episodes")}
    for spec in config["catalogs"]:
        out.append(
            {
                "kind": "sim",
                "catalog": spec,
                "batch": config["sim_batch"],
                "steps": config["sim_steps"],
            }
        )
        out.append(
            {
                "kind": "train",
                "catalog": spec,
                "envs": spec.get("train_envs", config["train_envs"]),
                "iterations": config["train_iterations"],
            }
        )
        out.append(
            {
                "kind": "agents",
                "catalog": spec,
                "train_instance": config["agent_instance"],
                "iterations": config["agent_iterations"],
                **shared,
            }
        )
        if spec.get("decompose", config["decompose"]):
            out.append(
                {"kind": "bound", "catalog": spec, "iterations": config["decompose_iterations"]}
            )
    return out


def run_cell(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    inst = catalog(p["catalog"])
    size = {"products": inst.n_products, "segments": inst.n_segments, "horizon": inst.horizon}
    if p["kind"] == "sim":
        params = SimParams.from_instance(inst)
        pol = SiloedPolicy(params)
        gen = torch.Generator().manual_seed(0)
        state = reset(params, p["batch"])
        pol.reset(p["batch"])
        t0 = time.perf_counter()
        steps = min(p["steps"], inst.horizon)
        for _ in range(steps):
            state, _ = step(state, pol.act(state), params, gen)
        secs = time.perf_counter() - t0
        return {
            **size,
            "batch": p["batch"],
            "product_steps_per_s": p["batch"] * inst.n_products * steps / secs,
            "env_steps_per_s": p["batch"] * steps / secs,
        }
    if p["kind"] == "train":
        cfg = TrainConfig(
            iterations=p["iterations"],
            num_envs=p["envs"],
            minibatch_envs=max(1, p["envs"] // 2),
            warm_start="none",
            eval_every=0,
            tensorboard=False,
            threads=1,
        )
        res = train(inst, cfg, workdir / "run", progress=False)
        return {
            **size,
            "envs": p["envs"],
            "env_steps": res.env_steps,
            "seconds": res.seconds,
            "env_steps_per_s": res.steps_per_second,
            "product_steps_per_s": res.steps_per_second * inst.n_products,
        }
    if p["kind"] == "agents":
        run, info = train_agents(
            load_instance(p["train_instance"]), "rl-multi-warm", 0, p["iterations"], workdir
        )
        params = SimParams.from_instance(inst, dtype=torch.float32)
        batch = max(1, min(p["episodes"], 16 if inst.n_products <= 2_000 else 4))
        t0 = time.perf_counter()
        agents = evaluate(
            params,
            make_policy(str(run), params),
            episodes=p["episodes"],
            seed=p["eval_seed"],
            batch_size=batch,
        )
        agent_secs = time.perf_counter() - t0
        siloed = evaluate(
            params, "siloed", episodes=p["episodes"], seed=p["eval_seed"], batch_size=batch
        )
        diff = compare(agents, siloed)
        return {
            **size,
            "agents": agents.mean,
            "agents_ci": agents.ci95,
            "siloed": siloed.mean,
            "siloed_ci": siloed.ci95,
            "diff": diff["mean"],
            "diff_ci": diff["ci95"],
            "agent_eval_seconds": agent_secs,
            "trained_on": p["train_instance"],
            **info,
        }
    if p["kind"] == "bound":
        sol = solve_catalog(inst, max_iterations=p["iterations"] + 1).result()
        return {
            **size,
            "bound": sol.bound,
            "plan_value": sol.plan_value,
            "gap": sol.gap,
            "seconds": sol.seconds,
            "iterations": sol.details["iterations"],
        }
    raise ValueError(f"unknown cell kind {p['kind']!r}")


def report(results: list[dict[str, Any]], config: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["params"]["kind"], r["params"]["catalog"]["name"]): r for r in results}
    names = [c["name"] for c in config["catalogs"]]
    lines, rows = [], []
    for name in names:
        sim, tr, ag = by[("sim", name)], by[("train", name)], by[("agents", name)]
        bd = by.get(("bound", name))
        s, t, a = sim["result"], tr["result"], ag["result"]
        b = bd["result"] if bd else None
        row = {
            "catalog": name,
            "products": s["products"],
            "segments": s["segments"],
            "sim_product_steps_per_s": s["product_steps_per_s"],
            "train_env_steps_per_s": t["env_steps_per_s"],
            "train_seconds": t["seconds"],
            "agents": a["agents"],
            "agents_ci": a["agents_ci"],
            "siloed": a["siloed"],
            "diff": a["diff"],
            "diff_ci": a["diff_ci"],
            "bound": b["bound"] if b else float("nan"),
            "plan_value": b["plan_value"] if b else float("nan"),
            "bound_gap": b["gap"] if b else float("nan"),
            "bound_seconds": b["seconds"] if b else float("nan"),
        }
        rows.append(row)
        lines.append(
            [
                name,
                s["products"],
                s["segments"],
                f"{s['product_steps_per_s'] / 1e6:.1f} M",
                f"{t['env_steps_per_s']:.1f}",
                a["siloed"],
                a["agents"],
                f"{a['diff']:+,.0f} ± {a['diff_ci']:,.0f}",
                row["bound"],
                row["plan_value"],
            ]
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = range(len(rows))
    axes[0].bar(x, [r["sim_product_steps_per_s"] / 1e6 for r in rows], color="tab:blue")
    axes[0].set_xticks(list(x), [r["catalog"] for r in rows])
    axes[0].set_ylabel("simulator: million product-periods / s")
    axes[0].set_title(f"Simulator throughput (batch {config['sim_batch']}, CPU)")
    w = 0.27
    for j, (key, label) in enumerate(
        [
            ("siloed", "siloed firm"),
            ("agents", "agents (trained small, zero-shot)"),
            ("bound", "fluid upper bound (decomposition)"),
        ]
    ):
        axes[1].bar([i + (j - 1) * w for i in x], [r[key] / 1e3 for r in rows], w, label=label)
    axes[1].set_xticks(list(x), [r["catalog"] for r in rows])
    axes[1].set_ylabel("profit per episode (thousands)")
    axes[1].set_title("Profit at catalog scale")
    axes[1].legend(
        fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False
    )
    save_figure(fig, out / "scale.png")
    atomic_write_text(out / "scale.csv", to_csv(rows))
    m = machine()
    body = [
        "# Case study: scale",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} (CPU). Agents warm-started from the "
        f"optimiser and trained on `{config['agent_instance']}` for {config['agent_iterations']} iterations, then "
        f"run unchanged on each catalog; {config['episodes']} evaluation episodes on common random numbers.",
        "",
        "```",
        table(
            [
                "catalog",
                "products",
                "segments",
                "sim speed",
                "train env-steps/s",
                "siloed",
                "agents",
                "agents - siloed (paired)",
                "fluid bound",
                "decomposed plan",
            ],
            lines,
        ),
        "```",
        "",
        "![scale](scale.png)",
        "",
    ]
    return atomic_write_text(out / "report.md", "\n".join(body) + "\n")
