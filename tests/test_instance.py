"""Instances: the TOML layout of docs/model.md, validation messages, named instances, generator."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from coordopt import (
    InstanceError,
    Stockout,
    generate_instance,
    load_instance,
    named_instances,
    save_instance,
)

MODEL_EXAMPLE = textwrap.dedent("""
    name = "tiny"
    horizon = 8
    discount = 1.0
    slate_size = 1
    stockout = "lost"

    [[product]]
    name = "A"
    price = 10.0
    unit_cost = 6.0
    holding_cost = 0.3
    lost_sale_penalty = 1.0
    lead_time = 1
    initial_inventory = 2
    salvage_value = 2.0
    max_order = 6

    [[product]]
    name = "B"
    price = 7.0
    unit_cost = 3.0
    holding_cost = 0.2
    lost_sale_penalty = 0.5
    lead_time = 0
    initial_inventory = 0
    salvage_value = 1.0
    max_order = 6

    [[segment]]
    name = "bargain"
    arrival_rate = 3.0
    base_attraction = [0.5, 0.8]
    rec_attraction = [1.5, 1.6]
    no_purchase = 1.0
""")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "inst.toml"
    p.write_text(text)
    return p


def test_model_md_example_loads_with_every_field(tmp_path):
    inst = load_instance(write(tmp_path, MODEL_EXAMPLE))
    assert inst.n_products == 2 and inst.n_segments == 1 and inst.horizon == 8
    assert inst.stockout is Stockout.LOST
    np.testing.assert_array_equal(inst.lead_time, [1, 0])
    np.testing.assert_array_equal(inst.max_order, [6, 6])
    np.testing.assert_array_equal(inst.rec_attraction, [[1.5, 1.6]])


def test_defaults_are_those_of_model_md(tmp_path):
    text = """
horizon = 3
[[product]]
price = 5.0
unit_cost = 2.0
[[segment]]
arrival_rate = 1.0
base_attraction = [0.7]
"""
    inst = load_instance(write(tmp_path, text))
    assert (inst.discount, inst.slate_size, inst.stockout) == (1.0, 1, Stockout.LOST)
    assert inst.warehouse_capacity is None
    for field in ("holding_cost", "lost_sale_penalty", "salvage_value", "fixed_order_cost"):
        assert getattr(inst, field)[0] == 0.0
    assert inst.lead_time[0] == 0 and inst.initial_inventory[0] == 0
    assert np.isinf(inst.max_order[0])
    assert inst.no_purchase[0] == 1.0
    np.testing.assert_array_equal(inst.rec_attraction, inst.base_attraction)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("price = 10.0", "price = -10.0", r"product 1 \(A\): field 'price' = -10.0 is invalid"),
        (
            "rec_attraction = [1.5, 1.6]",
            "rec_attraction = [0.1, 1.6]",
            r"segment 1 \(bargain\), product 1 \(A\): field 'rec_attraction' = 0.1 .*>= base_attraction",
        ),
        (
            "base_attraction = [0.5, 0.8]",
            "base_attraction = [0.5, 0.8, 0.2]",
            r"field 'base_attraction' .* expected 2 entries \(one per product",
        ),
        (
            "holding_cost = 0.3",
            "holdng_cost = 0.3",
            r"product 1 \(A\): unknown key 'holdng_cost'; allowed keys are",
        ),
        (
            "lead_time = 1",
            "lead_time = 1.5",
            r"product 1 \(A\): field 'lead_time' = 1.5 .*whole number",
        ),
        (
            'stockout = "lost"',
            'stockout = "gone"',
            r"field 'stockout' = 'gone' .*'lost' and 'hidden'",
        ),
        ("horizon = 8", "horizon = 0", r"top level: field 'horizon' = 0"),
        ("discount = 1.0", "discount = 1.5", r"field 'discount' = 1.5 .*\(0, 1\]"),
        (
            "arrival_rate = 3.0",
            "arrival_rate = 0.0",
            r"segment 1 \(bargain\): field 'arrival_rate' = 0.0",
        ),
        ("slate_size = 1", "slate_sise = 1", r"top level: unknown key 'slate_sise'"),
        ("price = 10.0", 'price = "ten"', r"field 'price' = 'ten' is invalid; expected a number"),
        ("initial_inventory = 2", "initial_inventory = -2", r"field 'initial_inventory' = -2"),
        (
            'name = "A"\nprice = 10.0',
            'name = "A"',
            r"product 1 \(A\): missing required key 'price'",
        ),
    ],
)
def test_bad_input_names_file_item_field_value_and_rule(tmp_path, old, new, expected):
    assert old in MODEL_EXAMPLE
    path = write(tmp_path, MODEL_EXAMPLE.replace(old, new, 1))
    with pytest.raises(InstanceError, match=expected) as err:
        load_instance(path)
    assert str(path) in str(err.value)


def test_malformed_toml_and_missing_file(tmp_path):
    with pytest.raises(InstanceError, match=r"inst.toml: malformed TOML"):
        load_instance(write(tmp_path, "horizon = = 3"))
    with pytest.raises(
        InstanceError, match=r"no such file, and not a bundled instance name \(bundled: .*tiny"
    ):
        load_instance(tmp_path / "nope.toml")


@pytest.mark.parametrize("suffix", [".toml", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    inst = generate_instance(seed=5, n_products=7, n_segments=3, horizon=9, slate_size=2)
    inst = inst.replace(
        warehouse_capacity=100.0,
        max_order=np.array([3, np.inf, 4, 5, np.inf, 1, 2]),
        fixed_order_cost=np.arange(7.0),
    )
    back = load_instance(save_instance(inst, tmp_path / f"x{suffix}"))
    for f in (
        "price",
        "unit_cost",
        "lead_time",
        "max_order",
        "base_attraction",
        "rec_attraction",
        "arrival_rate",
        "fixed_order_cost",
        "initial_inventory",
    ):
        np.testing.assert_array_equal(getattr(back, f), getattr(inst, f), err_msg=f)
    assert (back.name, back.horizon, back.slate_size, back.warehouse_capacity) == (
        inst.name,
        9,
        2,
        100.0,
    )
    assert list(tmp_path.iterdir()) == [tmp_path / f"x{suffix}"]  # atomic write leaves no temp file


def test_named_instances_have_the_promised_sizes():
    assert {"tiny", "small", "medium", "large"} <= set(named_instances())
    sizes = {name: load_instance(name) for name in ("tiny", "small", "medium", "large")}
    tiny = sizes["tiny"]
    assert (tiny.n_products, tiny.n_segments, tiny.horizon, tiny.max_lead_time) == (2, 1, 8, 1)
    for name, (n, m, t) in {
        "small": (10, 5, 26),
        "medium": (50, 20, 26),
        "large": (1000, 100, 52),
    }.items():
        inst = sizes[name]
        assert (inst.n_products, inst.n_segments, inst.horizon) == (n, m, t)
        assert inst.slate_size > 1


def test_instances_are_immutable():
    inst = load_instance("small")
    with pytest.raises(ValueError):
        inst.price[0] = 1.0


def test_generator_structure():
    inst = generate_instance(seed=1, n_products=300, n_segments=40)
    assert np.all(inst.rec_attraction >= inst.base_attraction)
    margin = 1 - inst.unit_cost / inst.price
    assert 0.05 < margin.min() and margin.max() < 0.8
    # Low-rank tastes: segment preference profiles are strongly correlated, not independent noise.
    logw = np.log(inst.base_attraction + 1e-12)
    sv = np.linalg.svd(logw - logw.mean(1, keepdims=True), compute_uv=False)
    assert sv[:6].sum() / sv.sum() > 0.5
    uplift = (inst.rec_attraction / np.maximum(inst.base_attraction, 1e-12)).mean(1)
    assert uplift.std() > 0.1  # uplift varies by segment
    assert (
        generate_instance(seed=1, n_products=300, n_segments=40).price.tolist()
        == inst.price.tolist()
    )


def test_generator_reaches_catalog_scale():
    inst = generate_instance(seed=0, n_products=10_000, n_segments=1_000, horizon=4)
    assert inst.base_attraction.shape == (1_000, 10_000)
    assert np.isfinite(inst.base_attraction).all()
