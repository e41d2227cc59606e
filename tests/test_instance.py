"""Instances: the TOML layout of docs/model.md, validation messages, named instances, generator."""

from __future__ import annotations

import dataclasses
import pickle
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from coordopt import (
    InstanceError,
    Stockout,
    generate_instance,
    load_instance,
    named_instances,
    save_instance,
)
from coordopt.generator import seasonal_profile
from coordopt.instance import (
    FIELD,
    FIELDS,
    Instance,
    Scope,
    content_hash,
    instance_to_dict,
    make_instance,
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
        ("price = 10.0", 'price = "ten"', r"field 'price' = 'ten' is invalid; expected one number"),
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


# --------------------------------------------------------------------------- the declaration


def test_every_field_is_declared_once_and_drives_the_formats(tmp_path):
    assert [s.name for s in FIELDS] == [f.name for f in dataclasses.fields(Instance)]
    assert all(s.doc for s in FIELDS)
    inst = load_instance("tiny").replace(category=["fruit", "fruit"])  # every optional field
    d = instance_to_dict(inst)
    top = {s.file_key for s in FIELDS if s.scope is Scope.GLOBAL} | {"product", "segment"}
    assert set(d) <= top
    assert set(d["product"][0]) == {s.file_key for s in FIELDS if s.scope.table == "product"}
    with np.load(save_instance(inst, tmp_path / "t.npz"), allow_pickle=False) as z:
        assert set(z.files) == {s.name for s in FIELDS}


def test_take_products_restricts_every_per_product_field():
    inst = load_instance("small")
    sub = inst.take_products([4, 1], name="sub")
    assert sub.product_names == (inst.product_names[4], inst.product_names[1])
    for field in ("price", "lead_time", "max_order", "initial_inventory"):
        np.testing.assert_array_equal(getattr(sub, field), getattr(inst, field)[[4, 1]])
    np.testing.assert_array_equal(sub.rec_attraction, inst.rec_attraction[:, [4, 1]])
    np.testing.assert_array_equal(sub.arrival_rate, inst.arrival_rate)
    assert sub.name == "sub" and sub.n_segments == inst.n_segments
    with pytest.raises(InstanceError, match="at least one product"):
        inst.take_products([])


# --------------------------------------------------------------------------- one validator


def _columns(**changes):
    fields = load_instance("tiny").fields()
    fields.update(changes)
    return fields


def _three_sources(tmp_path, columns):
    """The same (possibly invalid) data as a TOML file, an .npz file and Python keywords;
    returns each source's error message with its file prefix removed."""
    columns = {k: v for k, v in columns.items() if v is not None or FIELD[k].scope is Scope.GLOBAL}
    top = {s.file_key: columns[s.name] for s in FIELDS if s.scope is Scope.GLOBAL}
    top = {k: v.value if isinstance(v, Stockout) else v for k, v in top.items() if v is not None}
    for table, count in (("product", len(columns["product_names"])), ("segment", 1)):
        specs = [s for s in FIELDS if s.scope.table == table and s.name in columns]
        top[table] = [
            {
                s.file_key: (
                    np.asarray(columns[s.name])[:, j]
                    if s.scope is Scope.PERIOD_SEGMENT
                    else np.asarray(columns[s.name])[j]
                ).tolist()
                for s in specs
            }
            for j in range(count)
        ]
    for row in top["segment"]:
        rate = row["arrival_rate"]
        row["arrival_rate"] = rate[0] if len(set(rate)) == 1 else rate
    for row in top["product"]:
        if row["max_order"] == float("inf"):
            del row["max_order"]
    messages = []
    toml_path = tmp_path / "bad.toml"
    toml_path.write_text(tomli_w.dumps(top))
    npz_path = tmp_path / "bad.npz"
    arrays = {k: np.asarray(v.value if isinstance(v, Stockout) else v) for k, v in columns.items()}
    arrays["warehouse_capacity"] = np.asarray(np.nan)
    np.savez(npz_path, allow_pickle=False, **arrays)
    for path in (toml_path, npz_path):
        with pytest.raises(InstanceError) as err:
            load_instance(path)
        assert str(err.value).startswith(f"{path}: ")
        messages.append(str(err.value).removeprefix(f"{path}: "))
    with pytest.raises(InstanceError) as err:
        make_instance(**columns)
    messages.append(str(err.value))
    return messages


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"price": [10.0, -7.0]},
            r"^product 2 \(B\): field 'price' = -7.0 is invalid; expected a finite number in \[1e-06, 1e\+09\]$",
        ),
        (
            {"unit_cost": [6.0, np.inf]},
            r"^product 2 \(B\): field 'unit_cost' = inf is invalid; expected a finite number in \[0, 1e\+09\]$",
        ),
        (
            {"holding_cost": [np.nan, 0.2]},
            r"^product 1 \(A\): field 'holding_cost' = nan is invalid",
        ),
        (
            {"lead_time": [1.5, 0.0]},
            r"^product 1 \(A\): field 'lead_time' = 1.5 is invalid; expected a whole number >= 0",
        ),
        (
            {"initial_inventory": [2.0, 0.25]},
            r"^product 2 \(B\): field 'initial_inventory' = 0.25 .*whole number",
        ),
        ({"max_order": [6.5, 6.0]}, r"^product 1 \(A\): field 'max_order' = 6.5 .*whole number"),
        (
            {"horizon": 7.5},
            r"^top level: field 'horizon' = 7.5 is invalid; expected a whole number >= 1",
        ),
        (
            {"discount": 0.0},
            r"^top level: field 'discount' = 0.0 is invalid; expected a finite number in \(0, 1\]",
        ),
        (
            {"product_names": ("A", "A")},
            r"^product 2: field 'name' = 'A' is invalid; names must be unique: product 1",
        ),
        ({"no_purchase": [-1.0]}, r"^segment 1 \(bargain\): field 'no_purchase' = -1.0 is invalid"),
        (
            {"arrival_rate": [[3.0], [3.0], [3.0], [-1.0], [3.0], [3.0], [3.0], [3.0]]},
            r"^segment 1 \(bargain\), period 4: field 'arrival_rate' = -1.0",
        ),
        (
            {"base_attraction": [[0.5, np.inf]]},
            r"^segment 1 \(bargain\), product 2 \(B\): field 'base_attraction' = inf",
        ),
        (
            {"rec_attraction": [[1.5, 0.1]]},
            r"^segment 1 \(bargain\), product 2 \(B\): field 'rec_attraction' = 0.1 is invalid; must be >= base_attraction",
        ),
    ],
)
def test_every_source_gives_the_same_message(tmp_path, changes, expected):
    """TOML, .npz and Python constructors share one validator: same rule, same words."""
    if "arrival_rate" in changes:
        changes["arrival_rate"] = np.array(changes["arrival_rate"])
    toml_msg, npz_msg, py_msg = _three_sources(tmp_path, _columns(**changes))
    assert toml_msg == npz_msg == py_msg
    assert re.search(expected, py_msg), py_msg


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        (
            {"horizon": np.array([8, 8])},
            r"field 'horizon' = .* expected one number, got a list of 2",
        ),
        ({"product_names": np.array(["A"])}, r"field 'price' has shape \(2,\), expected \(1,\)"),
        ({"product_names": np.array([], dtype=str)}, r"at least one product is required"),
        ({"segment_names": np.array([], dtype=str)}, r"at least one segment is required"),
        ({"segment_names": np.array(["s", "s"])}, r"segment 2: field 'name' = 's' .*unique"),
        (
            {"price": np.array(["10", "7"])},
            r"product 1 \(A\): field 'price' = '10' is invalid; expected one number",
        ),
        ({"colour": np.zeros(2)}, r"unknown field\(s\) colour; allowed: name, horizon"),
        (
            {"arrival_rate": np.ones((5, 1))},
            r"field 'arrival_rate' has shape \(5, 1\), expected \(8, 1\)",
        ),
    ],
)
def test_npz_structure_errors_name_the_file_and_field(tmp_path, arrays, expected):
    inst = load_instance("tiny")
    path = save_instance(inst, tmp_path / "t.npz")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data.update(arrays)
    np.savez(path, allow_pickle=False, **data)
    with pytest.raises(InstanceError, match=expected) as err:
        load_instance(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "text", "pickle"])
def test_corrupt_npz_files_are_refused_naming_the_file(tmp_path, damage):
    path = save_instance(load_instance("small"), tmp_path / "s.npz")
    raw = path.read_bytes()
    if damage == "empty":
        raw = b""
    elif damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "flipped":
        buf = bytearray(raw)
        buf[raw.index(b"base_attraction.npy") + 200] ^= 0x10  # inside its compressed data
        raw = bytes(buf)
    elif damage == "text":
        raw = b"horizon = 8\n"
    else:
        raw = pickle.dumps({"horizon": 8})
    path.write_bytes(raw)
    with pytest.raises(InstanceError, match=r"not a readable \.npz instance") as err:
        load_instance(path)
    assert str(err.value).startswith(f"{path}: ")


def test_duplicate_names_and_empty_tables_in_toml(tmp_path):
    dup = MODEL_EXAMPLE.replace('name = "B"', 'name = "A"')
    with pytest.raises(InstanceError, match=r"product 2: field 'name' = 'A' .*unique"):
        load_instance(write(tmp_path, dup))
    two = MODEL_EXAMPLE + MODEL_EXAMPLE[MODEL_EXAMPLE.index("[[segment]]") :]
    with pytest.raises(InstanceError, match=r"segment 2: field 'name' = 'bargain' .*unique"):
        load_instance(write(tmp_path, two))
    none = MODEL_EXAMPLE[: MODEL_EXAMPLE.index("[[segment]]")]
    with pytest.raises(
        InstanceError, match=r"at least one segment is required \(a \[\[segment\]\] table"
    ):
        load_instance(write(tmp_path, none))


# --------------------------------------------------------------------------- seasonal demand


def test_seasonal_arrival_rate_loads_as_periods_by_segments(tmp_path):
    text = MODEL_EXAMPLE.replace(
        "arrival_rate = 3.0", "arrival_rate = [1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 3.0, 2.0]"
    )
    inst = load_instance(write(tmp_path, text))
    assert inst.seasonal and inst.arrival_rate.shape == (8, 1)
    np.testing.assert_array_equal(inst.arrival_rate[:, 0], [1, 2, 3, 4, 5, 4, 3, 2])
    flat = load_instance("tiny")
    assert not flat.seasonal and flat.arrival_rate.shape == (8, 1)
    np.testing.assert_array_equal(flat.arrival_rate, 3.0)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (
            "[1.0, 2.0]",
            r"segment 1 \(bargain\): field 'arrival_rate' = \[1.0, 2.0\] is invalid; a seasonal rate needs one value per period: expected 8 \(the horizon\), got 2",
        ),
        (
            "[1.0, 2.0, 3.0, 0.0, 5.0, 4.0, 3.0, 2.0]",
            r"segment 1 \(bargain\), period 4: field 'arrival_rate' = 0.0 is invalid; expected a finite number in \[1e-06, 1e\+09\]",
        ),
        (
            '[1.0, 2.0, 3.0, "x", 5.0, 4.0, 3.0, 2.0]',
            r"segment 1 \(bargain\), period 4: field 'arrival_rate' = 'x' is invalid; expected one number",
        ),
        ("[1.0, 2.0, 3.0, nan, 5.0, 4.0, 3.0, 2.0]", r"period 4: field 'arrival_rate' = nan"),
    ],
)
def test_bad_seasonal_rates_are_named(tmp_path, rate, expected):
    path = write(tmp_path, MODEL_EXAMPLE.replace("arrival_rate = 3.0", f"arrival_rate = {rate}"))
    with pytest.raises(InstanceError, match=expected):
        load_instance(path)


@pytest.mark.parametrize("suffix", [".toml", ".npz"])
def test_seasonal_round_trip_writes_a_scalar_for_constant_segments(tmp_path, suffix):
    inst = generate_instance(seed=2, n_products=4, n_segments=3, horizon=6, seasonality=0.5)
    rates = inst.arrival_rate.copy()
    rates[:, 1] = 7.5  # one constant segment among seasonal ones
    inst = inst.replace(arrival_rate=rates)
    back = load_instance(save_instance(inst, tmp_path / f"x{suffix}"))
    np.testing.assert_array_equal(back.arrival_rate, inst.arrival_rate)
    segs = instance_to_dict(inst)["segment"]
    assert segs[1]["arrival_rate"] == 7.5 and len(segs[0]["arrival_rate"]) == 6


def test_replace_keeps_constant_rates_across_horizons_but_not_seasonal_ones():
    tiny = load_instance("tiny")
    assert tiny.replace(horizon=3).arrival_rate.shape == (3, 1)
    seasonal = tiny.replace(arrival_rate=np.arange(1.0, 9.0)[:, None])
    with pytest.raises(InstanceError, match="new seasonal arrival_rate"):
        seasonal.replace(horizon=3)
    assert seasonal.replace(horizon=3, arrival_rate=np.array([[1.0], [2.0], [3.0]])).seasonal
    assert seasonal.replace(horizon=3, arrival_rate=[[1.0, 2.0, 3.0]]).seasonal  # per segment


def test_generator_seasonal_profile_keeps_the_mean_and_peaks_where_asked():
    flat = generate_instance(seed=4, n_segments=3, horizon=12)
    wavy = generate_instance(seed=4, n_segments=3, horizon=12, seasonality=0.6, peak=0.25)
    assert not flat.seasonal and wavy.seasonal
    np.testing.assert_allclose(wavy.arrival_rate.mean(0), flat.arrival_rate[0], rtol=2e-3)
    assert int(np.argmax(wavy.arrival_rate[:, 0])) == round(0.25 * 11)
    np.testing.assert_array_equal(wavy.price, flat.price)  # the same catalog otherwise
    profile = seasonal_profile(12, 0.6, 0.25)
    assert profile.mean() == pytest.approx(1.0) and profile.min() == pytest.approx(0.4, abs=0.05)
    with pytest.raises(ValueError, match="seasonality"):
        generate_instance(seasonality=1.0)


def test_generate_command_writes_a_seasonal_instance(tmp_path):
    from coordopt.cli import main

    out = tmp_path / "season.toml"
    flags = ["--n-products", "4", "--n-segments", "2", "--horizon", "6", "--seasonality", "0.5"]
    assert main(["generate", "--out", str(out), *flags, "--peak", "1.0"]) == 0
    inst = load_instance(out)
    assert inst.seasonal and int(np.argmax(inst.arrival_rate[:, 0])) == 5
    assert "arrival_rate = [" in out.read_text()


def test_an_infinite_warehouse_capacity_means_none(tmp_path) -> None:
    """Found by the TOML fuzz test: ``warehouse_capacity = inf`` loaded as inf."""
    tiny = Path(__file__).parents[1] / "coordopt" / "data" / "instances" / "tiny.toml"
    text = "warehouse_capacity = inf\n" + tiny.read_text()
    inst = load_instance(write(tmp_path, text))
    assert inst.warehouse_capacity is None
    assert load_instance(write(tmp_path, text.replace("= inf", "= 5.0"))).warehouse_capacity == 5.0


@pytest.mark.parametrize("suffix", [".toml", ".npz"])
def test_categories_are_optional_labels_in_both_formats(tmp_path, suffix) -> None:
    small = load_instance("small")
    assert small.category is None
    labelled = small.replace(category=[f"c{i % 3}" for i in range(small.n_products)])
    again = load_instance(save_instance(labelled, tmp_path / f"c{suffix}"))
    assert again.category == labelled.category
    assert load_instance(save_instance(small, tmp_path / f"n{suffix}")).category is None
    assert labelled.take_products([4, 1]).category == ("c1", "c1")
    assert content_hash(labelled) == content_hash(small)  # a label, not another problem


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        (["fruit"], r"field 'category' .* expected 2 entries \(one string per product\), got 1"),
        (["fruit", ""], r"product 2 \(B\): field 'category' = '' is invalid"),
        (["fruit", 3], r"product 2 \(B\): field 'category' = 3 is invalid"),
    ],
)
def test_bad_categories_are_named(category, expected) -> None:
    with pytest.raises(InstanceError, match=expected):
        load_instance("tiny").replace(category=category)


def test_a_category_on_some_products_only_is_refused(tmp_path) -> None:
    text = MODEL_EXAMPLE.replace('name = "A"', 'name = "A"\ncategory = "fruit"')
    with pytest.raises(InstanceError, match=r"product 2 \(B\): missing key 'category'"):
        load_instance(write(tmp_path, text))
    both = text.replace('name = "B"', 'name = "B"\ncategory = "veg"')
    assert load_instance(write(tmp_path, both)).category == ("fruit", "veg")


@pytest.mark.parametrize("seasonal", [False, True])
def test_a_huge_horizon_allocates_nothing_its_length(tmp_path: Path, seasonal: bool) -> None:
    """A horizon of 10**12 (the fuzz test's mutation of tiny.toml) loads as a view when no
    segment is seasonal (the size guard refuses the work later), and with a seasonal segment
    is refused naming the field and both lengths, before a T x M array is allocated (it asked
    numpy for 7 TiB)."""
    tiny = Path(__file__).parents[1] / "coordopt" / "data" / "instances" / "tiny.toml"
    text = tiny.read_text().replace("horizon = 8", f"horizon = {10**12}")
    if seasonal:
        text = text.replace("arrival_rate = 3.0", "arrival_rate = [3.0, 3.0]")
    path = tmp_path / "huge.toml"
    path.write_text(text)
    if not seasonal:
        assert load_instance(path).arrival_rate.shape == (10**12, 1)
        return
    expected = r"field 'arrival_rate' .* expected 1000000000000 \(the horizon\), got 2"
    with pytest.raises(InstanceError, match=expected):
        load_instance(path)
