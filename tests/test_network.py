"""The substitution network: planted categories recovered, none found where none is planted,
the batched bid-price response against the policy itself, the adjusted Rand index by pair
counting, the agents' agreement, and the CLI's outputs."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json

import networkx as nx
import numpy as np
import pytest
import torch

from coordopt.cli import main
from coordopt.generator import generate_instance
from coordopt.insights.network import (
    adjusted_rand_index,
    agents_agreement,
    analyse_network,
    build_network,
    optimiser_response,
    policy_response,
    simulated_response,
    stock_value_response,
)
from coordopt.instance import load_instance
from coordopt.policies import make_policy
from coordopt.simulator import SimParams, reset


def planted(affinity: float = 4.0, seed: int = 1):
    """200 products in 4 planted categories, 20 segments favouring each."""
    return generate_instance(
        seed=seed,
        n_products=200,
        n_segments=80,
        slate_size=4,
        horizon=4,
        clusters=4,
        cluster_affinity=affinity,
    )


def test_planted_categories_are_recovered():
    inst = planted()
    assert inst.category is not None and len(set(inst.category)) == 4
    summary = analyse_network(build_network(inst, optimiser_response(inst, "bidprice")))
    assert summary["category_ari"] >= 0.9
    assert summary["covered"] >= 190 and len(summary["communities"]) >= 4
    assert summary["category_share"] > 0.9 > 0.3 > summary["category_share_random"]


def test_no_planted_structure_no_agreement():
    inst = planted(affinity=0.0)  # the same labels, tastes that ignore them
    summary = analyse_network(build_network(inst, optimiser_response(inst, "bidprice")))
    assert abs(summary["category_ari"]) < 0.1
    assert summary["category_share"] == pytest.approx(summary["category_share_random"], abs=0.1)


def test_generator_plants_categories_without_changing_other_catalogs():
    plain = generate_instance(seed=3, n_products=12, n_segments=4)
    same = generate_instance(seed=3, n_products=12, n_segments=4, clusters=2, cluster_affinity=0)
    assert plain.category is None and same.category == ("C1", "C2") * 6
    np.testing.assert_array_equal(plain.base_attraction, same.base_attraction)
    strong = generate_instance(seed=3, n_products=12, n_segments=4, clusters=2)
    share = strong.base_attraction[:, ::2].sum(1) / strong.base_attraction.sum(1)
    assert (share[::2] > 0.8).all() and (share[1::2] < 0.2).all()  # segment k favours C(k%2+1)
    with pytest.raises(ValueError, match="--clusters 5 needs at least as many segments"):
        generate_instance(seed=3, n_products=12, n_segments=4, clusters=5)


def _dense(response, n: int) -> np.ndarray:
    out = np.zeros((n, n))
    out[response.edge_source, response.edge_target] = response.edge_demand
    return out


@pytest.mark.parametrize("stockout", ["lost", "hidden"])
def test_batched_response_is_the_bid_price_policy_on_every_shortage_state(stockout):
    """Differential: the batched rule (only unsettled segments solved again) against
    BidPricePolicy.act on the state and one copy per product without its stock."""
    inst = generate_instance(
        seed=2, n_products=30, n_segments=8, slate_size=3, horizon=6, clusters=3, stockout=stockout
    )
    inst = inst.replace(  # lead time 1: a short product cannot be restored within the period
        lead_time=np.ones(inst.n_products, dtype=np.int64),
        initial_inventory=np.full(inst.n_products, 5),
    )
    params = SimParams.from_instance(inst, dtype=torch.float64)
    policy = make_policy("bidprice", params, reoptimize_every=0)
    t, n = 3, inst.n_products
    everything = {"min_share": 0.0, "max_edges": n}
    exact = stock_value_response(params, policy.solution.mu[t], t, tolerance=0.0, **everything)
    state = dataclasses.replace(reset(params, 1), t=t)
    acted = policy_response(params, policy, state, torch.arange(n), method="bidprice", **everything)
    np.testing.assert_allclose(_dense(exact, n), _dense(acted, n), atol=1e-9)
    np.testing.assert_allclose(exact.demand, acted.demand, atol=1e-9)
    np.testing.assert_allclose(exact.rec_share, acted.rec_share, atol=1e-12)
    sticky = stock_value_response(params, policy.solution.mu[t], t, **everything)
    assert set(sticky.sources) <= set(exact.sources)
    if stockout == "lost":  # a product off every slate moves demand only by a slate's change
        for i in set(range(n)) - set(exact.sources):
            assert _dense(acted, n)[i].sum() == 0.0


def _ari_by_pairs(a, b) -> float:
    """The adjusted Rand index from its definition over all pairs of items."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    same_a = np.array([a[i] == a[j] for i, j in pairs])
    same_b = np.array([b[i] == b[j] for i, j in pairs])
    index = float((same_a & same_b).sum())
    expected = same_a.sum() * same_b.sum() / len(pairs)
    top = 0.5 * (same_a.sum() + same_b.sum())
    return (index - expected) / (top - expected)


def test_adjusted_rand_index_by_pair_counting():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 25), rng.integers(0, 3, 25)
        assert adjusted_rand_index(a, b) == pytest.approx(_ari_by_pairs(a, b))
    assert adjusted_rand_index([0, 0, 1, 1], ["x", "x", "y", "y"]) == 1.0
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert adjusted_rand_index([0, 0, 0], [1, 1, 1]) == 1.0


def test_the_agreement_of_a_policy_that_follows_the_rule():
    inst = generate_instance(seed=1, n_products=24, n_segments=12, slate_size=3, horizon=8)
    inst = inst.replace(lead_time=np.ones(inst.n_products, dtype=np.int64))
    net = optimiser_response(inst, "bidprice")
    assert agents_agreement(net, net) == pytest.approx(1.0)
    sources = sorted(set(net.edge_source.tolist()))
    follower = simulated_response(inst, "bidprice", sources, net.period, episodes=2)
    ignorer = simulated_response(inst, "siloed", sources, net.period, episodes=2)
    assert agents_agreement(net, follower) > 0.5
    assert agents_agreement(net, ignorer) == 0.0  # static slates move nothing in lost mode


def test_mpc_and_dp_networks():
    small = load_instance("small")
    mpc = optimiser_response(small)  # 10 products: MPC where the DP does not fit
    assert mpc.method == "mpc" and mpc.n_edges > 0 and (mpc.edge_demand > 0).all()
    tiny = optimiser_response(load_instance("tiny"))
    assert tiny.method == "dp" and tiny.demand.shape == (2,)


def test_cli_writes_the_network(tmp_path, capsys):
    path = tmp_path / "cat.toml"
    flags = "--n-products 40 --n-segments 16 --clusters 4 --horizon 4 --seed 2".split()
    assert main(["generate", "--out", str(path), *flags]) == 0
    out = tmp_path / "net"
    capsys.readouterr()
    flags = "--network --method bidprice --period 2 --json".split()
    rc = main(["insights", str(path), *flags, "--out", str(out)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("communities", "backups", "category_ari", "agents_agreement"):
        assert key in summary
    assert summary["agents_agreement"] is None and summary["period"] == 2
    assert all(isinstance(p, str) for c in summary["communities"] for p in c)
    graph = nx.read_graphml(out / "network.graphml")
    assert graph.number_of_nodes() == 40 and graph.number_of_edges() == summary["n_edges"]
    with open(out / "network_edges.csv") as f:
        edges = list(csv.DictReader(f))
    assert len(edges) == summary["n_edges"]
    backed = {}
    for e in edges:
        backed[e["target"]] = backed.get(e["target"], 0.0) + float(e["demand"])
    top = summary["backups"][0]
    assert top["demand"] == pytest.approx(max(backed.values()), rel=1e-5)
    assert (out / "network.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "network.json").read_text())["n_edges"] == summary["n_edges"]
    assert not list(out.glob(".*"))  # no temporary files left behind
    flags = "--network --method siloed".split()
    assert main(["insights", str(path), *flags, "--out", str(tmp_path / "x")]) == 2
    assert main(["insights", str(path), "--agents", "x", "--out", str(tmp_path / "y")]) == 2
