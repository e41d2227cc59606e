"""The money terms are declared once (:mod:`coordopt.economics`) and every consumer reads them.

Two kinds of check: every per-term result carries the declaration's names and adds up, with
the declared signs, to the profit (and the departments' shares to the same profit); and a
term added to the declaration alone -- a per-order handling fee -- reaches every consumer,
each of which then agrees with the same instance whose fixed order cost already includes
the fee. A consumer that read a coefficient by its name instead would miss the fee.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coordopt import economics, marl
from coordopt.economics import COST, INCOME, Charge, Department, Flow, Term
from coordopt.evaluation import evaluate, rollout
from coordopt.instance import FIELD, Instance, load_instance
from coordopt.models.fluid import build_fluid_model, fluid_data
from coordopt.policies import critical_fractile, make_policy
from coordopt.rl.rollout import reward_streams
from coordopt.simulator import SimParams, StepResult
from coordopt.solvers.catalog import solve_catalog
from coordopt.solvers.dp import solve_dp
from coordopt.solvers.fluid import solve_fluid
from coordopt.solvers.highs_bulk import assemble_fluid_lp, differences_from_model
from coordopt.solvers.lagrangian import solve_lagrangian

HANDLING = Term(
    "handling_cost", COST, Department.REPLENISHMENT, (Charge("holding_cost", Flow.PLACED),)
)
"""A per-order handling fee, for the test only (it borrows ``holding_cost`` as its data)."""


def _tiny() -> Instance:
    """tiny with a fixed order cost on one product and discounting: every term is live."""
    return load_instance("tiny").replace(fixed_order_cost=[1.5, 0.0], discount=0.95)


def _steps(inst: Instance, seed: int = 0) -> tuple[np.ndarray, list[StepResult]]:
    """Discounted profit per episode of the siloed firm on ``inst`` and every step's result."""
    params = SimParams.from_instance(inst, dtype=torch.float64)
    results: list[StepResult] = []
    stats = rollout(
        params, make_policy("siloed", params), 8, seed, on_step=lambda _, r: results.append(r)
    )
    return stats.profit, results


def test_the_declaration_is_well_formed():
    assert len(set(economics.term_names())) == len(economics.TERMS)
    assert {d.value for d in Department} == set(marl.AGENTS)
    inst = _tiny()
    money = economics.unit_values(inst)
    for term in economics.TERMS:
        assert term.sign in (INCOME, COST) and term.charges
        assert all(c.coefficient in FIELD for c in term.charges), term
    for flow in Flow:
        signed = [
            t.sign * getattr(inst, c.coefficient)
            for t in economics.TERMS
            for c in t.charges
            if c.flow is flow
        ]
        np.testing.assert_array_equal(money[flow], sum(signed, np.zeros(inst.n_products)))


def test_step_terms_and_shares_add_up_to_the_reward():
    _, results = _steps(_tiny())
    for res in results:
        assert tuple(res.terms) == economics.term_names()
        signed = sum(t.sign * res.terms[t.name] for t in economics.TERMS)
        torch.testing.assert_close(signed, res.reward, rtol=1e-12, atol=1e-9)
        shares = marl.agent_rewards(res, "departmental")
        assert set(shares) == set(marl.AGENTS)
        torch.testing.assert_close(sum(shares.values()), res.reward, rtol=1e-12, atol=1e-9)
        streams = reward_streams(res, 2.0)  # the trainer's split is the same function's
        for agent, share in shares.items():
            assert torch.equal(streams[agent], share / 2.0)
    assert any(bool((res.terms["salvage"] != 0).any()) for res in results)
    assert any(bool((res.terms["ordering_cost"] != 0).any()) for res in results)


def test_evaluation_columns_are_the_declared_terms():
    summary = evaluate(_tiny(), "siloed", episodes=8, seed=0).summary()
    assert tuple(summary["terms"]) == economics.term_names()
    signed = sum(t.sign * summary["terms"][t.name] for t in economics.TERMS)
    assert signed == pytest.approx(summary["mean"], rel=1e-12)


def _consumers(inst: Instance) -> dict[str, object]:
    """What every money consumer computes for ``inst``."""
    return {
        "simulator": _steps(inst)[0],
        "fluid-bulk": solve_fluid(inst, method="bulk").objective,
        "fluid-pyomo": solve_fluid(inst, method="pyomo").objective,
        "dp": solve_dp(inst).value,
        "catalog": solve_catalog(inst, max_iterations=30).bound,
        "lagrangian": solve_lagrangian(inst, iterations=2).bound,
        "newsvendor": critical_fractile(inst, last_order=True),
        "pyomo-vs-bulk": differences_from_model(
            assemble_fluid_lp(fluid_data(inst)), build_fluid_model(inst)
        ),
    }


def test_a_term_added_to_the_declaration_alone_reaches_every_consumer(monkeypatch):
    inst = _tiny()
    fee_in_fixed_cost = inst.replace(fixed_order_cost=inst.fixed_order_cost + inst.holding_cost)
    included = _consumers(fee_in_fixed_cost)
    monkeypatch.setattr(economics, "TERMS", (*economics.TERMS, HANDLING))
    added = _consumers(inst)
    assert added.pop("pyomo-vs-bulk") == included.pop("pyomo-vs-bulk") == []
    for name, value in included.items():
        np.testing.assert_allclose(added[name], value, rtol=1e-9, err_msg=name)
    _, results = _steps(inst)
    assert tuple(results[0].terms) == economics.term_names()
    assert economics.term_names()[-1] == "handling_cost"
    assert any(bool((r.terms["handling_cost"] > 0).any()) for r in results)
