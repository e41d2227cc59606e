"""scale: does coordopt run at catalog scale, and what does each policy earn there?

For each catalog (the bundled ``large``: 1,000 products x 100 segments, and a generated
10,000-product catalog): simulator and training throughput; the catalog-scale fluid bound;
and, on one stream of customers (common random numbers, paired against the siloed firm):
the siloed firm, the season-aware siloed firm, bid-price control, agents trained on a small
instance and run unchanged (zero-shot: their networks are shared across products and
segments), and agents trained on the catalog itself -- from their own warm start
(``tune = "train"``) or fine-tuned (``tune = "init"``) from the small instance's agents or,
with ``init_from = "CATALOG"``, from agents trained on that catalog with its defaults --
within a wall-clock budget, besides each catalog's own policies (the best siloed firm, the
static-margin firm, the decomposition policy). The report gives each policy's fraction of the
bound and pairs the agents with the strongest optimiser policy evaluated there.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from coordopt.case_studies.common import paired_ci, to_csv
from coordopt.evaluation import evaluate
from coordopt.generator import generate_instance
from coordopt.instance import Instance, load_instance
from coordopt.io import atomic_write_text, save_figure
from coordopt.machine import machine
from coordopt.policies import SiloedPolicy, make_policy
from coordopt.rl.checkpoint import init_config
from coordopt.rl.config import TrainConfig, size_defaults
from coordopt.rl.ppo import train
from coordopt.rl.rundir import AGENTS_RUN, RunDir
from coordopt.rl.runs import train_agents
from coordopt.simulator import SimParams, reset, step
from coordopt.solvers.catalog import solve_catalog
from coordopt.solvers.fluid import solve_fluid
from coordopt.solvers.lagrangian import BestSiloedPolicy, LagrangianPolicy
from coordopt.text import table


def catalog(spec: dict[str, Any]) -> Instance:
    """A bundled instance by name, or a generated one (``n_products``, ``n_segments``, ``horizon``).

    Per-catalog options: ``train_envs`` (environments of the training-throughput cell)
    overrides the grid's default; ``tune`` adds the cell of agents trained on the catalog
    (with the catalog-scale defaults of ``coordopt train``, ``tune_config`` over the grid's;
    ``init_from`` names the catalog the fine-tuned agents are first trained on: one of the
    grid's, or a bundled instance); ``policies`` are evaluated besides the grid's.
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
    """The grid's cells, queued longest first so a pool of workers finishes soonest: catalogs
    from the last listed (the config lists them smallest first), each one's tuned cell first."""
    out = []
    shared = {k: config[k] for k in ("eval_seed", "episodes")}
    zero_shot = {
        "instance": config["agent_instance"],
        "iterations": config["agent_iterations"],
        "scorer": config["agent_scorer"],
    }
    by_name = {spec["name"]: spec for spec in config["catalogs"]}
    for spec in reversed(config["catalogs"]):
        if "tune" in spec:
            out.append(
                {
                    "kind": "tuned",
                    "catalog": spec,
                    "tune": spec["tune"],
                    # the source catalog: one of the grid's (generated ones too) or bundled
                    "init_from": by_name.get(spec["init_from"], {"name": spec["init_from"]})
                    if "init_from" in spec
                    else None,
                    "source_train": config["tune_config"],
                    "zero_shot": zero_shot,
                    "train": config["tune_config"] | spec.get("tune_config", {}),
                    **shared,
                }
            )
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
        out.append({"kind": "bound", "catalog": spec, "gap": config["bound_gap"]})
        if config.get("noise", {}).get("catalog") == spec["name"]:
            out.append({"kind": "noise", "catalog": spec, "products": config["noise"]["products"]})
        out.append(
            {
                "kind": "policies",
                "catalog": spec,
                "policies": config["policies"] + spec.get("policies", []),
                "zero_shot": zero_shot,
                **shared,
            }
        )
    return out


def evaluate_all(inst: Instance, policies: dict[str, str], p: dict[str, Any]) -> dict[str, Any]:
    """Each policy's mean, CI and per-episode profits on one stream (common random numbers:
    the report pairs any two rows of a catalog, across cells too). A decomposition policy
    (``lagrangian``) also leaves the stochastic bound its programs were solved for."""
    params = SimParams.from_instance(inst, dtype=torch.float32)
    batch = max(1, min(p["episodes"], 16 if inst.n_products <= 2_000 else 4))
    out: dict[str, Any] = {}
    for label, spec in policies.items():
        began = time.perf_counter()
        policy = make_policy(spec, params)
        ev = evaluate(params, policy, episodes=p["episodes"], seed=p["eval_seed"], batch_size=batch)
        out[label] = {
            "mean": ev.mean,
            "ci": ev.ci95,
            "profits": ev.profit.tolist(),
            "eval_seconds": time.perf_counter() - began,
        }
        if isinstance(policy, LagrangianPolicy):  # the bound its programs were solved for
            solution = policy.solution
            out[label]["stochastic_bound"] = {
                "bound": solution.bound,
                "fluid_bound": solution.fluid_bound,
                "iterations": solution.iterations,
                "seconds": solution.seconds,
                "stop": solution.stop,
            }
    return out


def _train(inst: Instance, settings: dict[str, Any], out: Path, init: Path | None = None) -> Any:
    """``coordopt train`` on ``inst`` with its size's defaults under ``settings`` (from the
    agents of ``init`` if given), resumed where ``out`` holds a checkpoint."""
    settings = {**size_defaults(inst, settings), "tensorboard": False, "threads": 1, **settings}
    config = init_config(init, settings) if init else TrainConfig(**settings)
    resume = RunDir(out, AGENTS_RUN).resumable
    return train(inst, config, out, progress=False, init=None if resume else init, resume=resume)


def _zero_shot(spec: dict[str, Any], workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The agents warm-started and trained on the small instance (resumed if already there)."""
    small = load_instance(spec["instance"])
    return train_agents(
        small, "rl-multi-warm", 0, spec["iterations"], workdir, scorer=spec["scorer"]
    )


def noise(inst: Instance) -> dict[str, Any]:
    """How much of the fluid program's profit the demand's noise alone costs: with the siloed
    firm's slates held fixed (so the products are independent), each product's exact
    inventory program (the best siloed firm's) against the fluid program with the same slates
    and the same mean demand."""
    params = SimParams.from_instance(inst, dtype=torch.float64)
    exact = BestSiloedPolicy(params)
    fluid = solve_fluid(inst, variant="siloed-slates").result()
    return {
        "noise_products": inst.n_products,
        "exact": exact.value,
        "fluid": fluid.bound,
        "exact_of_fluid": exact.value / fluid.bound,
        "postponed_products": exact.programs.postponed_products,
    }


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
    if p["kind"] == "bound":
        sol = solve_catalog(inst, gap=p["gap"]).result()
        return {
            **size,
            "bound": sol.bound,
            "plan_value": sol.plan_value,
            "gap": sol.gap,
            "seconds": sol.seconds,
            "iterations": sol.details["iterations"],
        }
    if p["kind"] == "noise":
        return {**size, **noise(inst.take_products(range(p["products"])))}
    if p["kind"] == "policies":
        run, info = _zero_shot(p["zero_shot"], workdir)
        names = ["siloed", *p["policies"]]
        policies = {name: name for name in names} | {"agents (zero-shot)": str(run)}
        return {**size, "policies": evaluate_all(inst, policies, p), "zero_shot": info}
    if p["kind"] == "tuned":
        init = None
        if p["tune"] == "init" and p.get("init_from"):
            init = workdir / "source"  # trained on that catalog with its own defaults here
            _train(catalog(p["init_from"]), p["source_train"], init)
        elif p["tune"] == "init":
            init = _zero_shot(p["zero_shot"], workdir)[0]
        res = _train(inst, p["train"], workdir / "tuned", init)
        label = "agents (fine-tuned)" if init else "agents (trained here)"
        return {
            **size,
            "policies": evaluate_all(inst, {label: str(workdir / "tuned")}, p),
            "tuned": {
                "iterations": res.iterations,
                "env_steps": res.env_steps,
                "train_seconds": res.seconds,
                "steps_per_second": res.steps_per_second,
            },
        }
    raise ValueError(f"unknown cell kind {p['kind']!r}")


def report(results: list[dict[str, Any]], config: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c["name"] for c in config["catalogs"]]
    one = {(r["params"]["kind"], r["params"]["catalog"]["name"]): r["result"] for r in results}
    rows, lines, speed, notes = [], [], [], []
    for name in names:
        sim, tr, bound = one[("sim", name)], one[("train", name)], one[("bound", name)]
        evaluated = one[("policies", name)]["policies"] | one.get(("tuned", name), {}).get(
            "policies", {}
        )
        stochastic = next(
            (r["stochastic_bound"] for r in evaluated.values() if "stochastic_bound" in r), None
        )
        tighter = min(bound["bound"], stochastic["bound"]) if stochastic else bound["bound"]
        speed.append(
            [
                name,
                sim["products"],
                sim["segments"],
                f"{sim['product_steps_per_s'] / 1e6:.1f} M",
                f"{tr['env_steps_per_s']:.1f}",
                bound["bound"],
                f"{bound['gap']:.2%}",
                f"{bound['seconds']:.0f}",
                stochastic["bound"] if stochastic else "—",
                f"{stochastic['iterations']} it, {stochastic['seconds']:.0f}"
                if stochastic
                else "—",
            ]
        )
        if ("noise", name) in one:
            z = one[("noise", name)]
            notes.append(
                f"- {name}, noise against policy: on its first {z['noise_products']:,} products "
                "with the siloed firm's slates held fixed, each product's exact inventory "
                f"program earns {z['exact_of_fluid']:.1%} of what the same mean demand earns in "
                f"the fluid program ({z['exact']:,.0f} against {z['fluid']:,.0f}; "
                f"{z['postponed_products']} products' programs postponed): that much of the "
                "fluid bound no policy can reach, whatever it coordinates."
            )
        best_siloed = next((k for k in evaluated if k.startswith("siloed:inventory=dp")), None)
        optimisers = {k: r for k, r in evaluated.items() if not k.startswith("agents")}
        strongest = max(optimisers, key=lambda k: optimisers[k]["mean"])
        for policy in ("agents (trained here)", "agents (fine-tuned)"):
            for other in dict.fromkeys([strongest, "bidprice"]):
                if policy in evaluated and other in evaluated:
                    d, ci = paired_ci(evaluated[policy]["profits"], evaluated[other]["profits"])
                    notes.append(
                        f"- {name}: {policy} minus `{other}`"
                        f"{' (the strongest optimiser policy here)' if other == strongest else ''}"
                        f", paired: {d:+,.0f} ± {ci:,.0f}."
                    )
        for policy, r in evaluated.items():
            vs = paired_ci(r["profits"], evaluated["siloed"]["profits"])
            vs_best = (
                paired_ci(r["profits"], evaluated[best_siloed]["profits"])
                if best_siloed
                else (math.nan, math.nan)
            )
            row = {
                "catalog": name,
                "products": sim["products"],
                "policy": policy,
                "mean": r["mean"],
                "ci": r["ci"],
                "diff_vs_siloed": vs[0],
                "diff_ci": vs[1],
                "diff_vs_best_siloed": vs_best[0],
                "diff_vs_best_siloed_ci": vs_best[1],
                "bound": bound["bound"],
                "fraction_of_bound": r["mean"] / bound["bound"],
                "stochastic_bound": stochastic["bound"] if stochastic else math.nan,
                "tighter_bound": tighter,
                "fraction_of_tighter_bound": r["mean"] / tighter,
                "sim_product_steps_per_s": sim["product_steps_per_s"],
                "train_env_steps_per_s": tr["env_steps_per_s"],
            }
            rows.append(row)
            lines.append(
                [
                    name,
                    policy,
                    r["mean"],
                    r["ci"],
                    f"{vs[0]:+,.0f} ± {vs[1]:,.0f}",
                    f"{vs_best[0]:+,.0f} ± {vs_best[1]:,.0f}" if best_siloed else "—",
                    f"{row['fraction_of_tighter_bound']:.1%}",
                ]
            )
    labels = list(dict.fromkeys(r["policy"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 3.8))
    w = 0.8 / len(labels)
    for j, label in enumerate(labels):
        xs = [
            i + (j - (len(labels) - 1) / 2) * w
            for i, name in enumerate(names)
            if any(r["catalog"] == name and r["policy"] == label for r in rows)
        ]
        ys = [
            100 * r["fraction_of_tighter_bound"]
            for name in names
            for r in rows
            if r["catalog"] == name and r["policy"] == label
        ]
        ax.bar(xs, ys, w, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("% of the tighter upper bound")
    ax.set_ylim(bottom=max(0.0, min(100 * r["fraction_of_tighter_bound"] for r in rows) - 10))
    ax.set_title("Profit at catalog scale, as a fraction of the tighter of the two bounds")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    save_figure(fig, out / "scale.png")
    atomic_write_text(out / "scale.csv", to_csv(rows))
    m = machine()
    tuned = {name: one[("tuned", name)]["tuned"] for name in names if ("tuned", name) in one}
    body = [
        "# Case study: scale",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} (CPU). Zero-shot agents: "
        f"warm-started and trained on `{config['agent_instance']}` for "
        f"{config['agent_iterations']} iterations ({config['agent_scorer']} scorer), run unchanged. {config['episodes']} "
        f"evaluation episodes per policy on one stream (seed {config['eval_seed']}), paired "
        "against the siloed firm and the best siloed firm (`siloed:inventory=dp`: marketing's "
        "slates, each product's stock run by its exact program for the demand they bring). The "
        "stochastic bound is the one the decomposition policy (`lagrangian`) solves its "
        "per-product programs for (`coordopt solve --method lagrangian`, same options); each "
        "policy is shown as a fraction of the tighter of the two bounds.",
        "",
        "```",
        table(
            [
                "catalog",
                "products",
                "segments",
                "sim speed",
                "train env-steps/s",
                "fluid bound",
                "gap",
                "bound s",
                "stochastic bound",
                "its cost (s)",
            ],
            speed,
        ),
        "```",
        "",
        "```",
        table(
            [
                "catalog",
                "policy",
                "mean profit",
                "±95%",
                "vs siloed (paired)",
                "vs best siloed (paired)",
                "% of tighter bound",
            ],
            lines,
        ),
        "```",
        "",
        *(
            f"- {name}: agents trained for {t['iterations']} iterations, {t['env_steps']:,} env "
            f"steps, {t['train_seconds'] / 60:.1f} min ({t['steps_per_second']:.1f} env-periods/s)."
            for name, t in tuned.items()
        ),
        *notes,
        "",
        "![scale](scale.png)",
        "",
    ]
    return atomic_write_text(out / "report.md", "\n".join(body) + "\n")
