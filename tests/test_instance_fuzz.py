"""Fuzzing instance files in both formats: every mutated file either loads into an instance
that passes the checks, or raises InstanceError naming the file -- never another exception."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordopt.instance import (
    FIELD,
    FIELDS,
    MAX_MONEY,
    Instance,
    InstanceError,
    Kind,
    Scope,
    instance_to_dict,
    load_instance,
    make_instance,
    save_instance,
)


def _valid() -> list[Instance]:
    tiny = load_instance("tiny")
    seasonal = tiny.replace(
        arrival_rate=np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 3.0, 2.0]]).T,
        warehouse_capacity=9.0,
    )
    return [tiny, seasonal]


VALID = _valid()


def assert_passes_the_checks(inst: Instance) -> None:
    """What every loaded instance guarantees (docs/model.md, "Data")."""
    n, m, t = inst.n_products, inst.n_segments, inst.horizon
    assert n >= 1 and m >= 1 and t >= 1 and inst.slate_size >= 1
    assert len(set(inst.product_names)) == n and len(set(inst.segment_names)) == m
    assert 0 < inst.discount <= 1
    for spec in FIELDS:
        value = getattr(inst, spec.name)
        if spec.scope is Scope.GLOBAL or spec.kind is Kind.TEXT:
            continue
        shape = {
            Scope.PRODUCT: (n,),
            Scope.SEGMENT: (m,),
            Scope.PERIOD_SEGMENT: (t, m),
            Scope.SEGMENT_PRODUCT: (m, n),
        }[spec.scope]
        assert value.shape == shape, spec.name
        if value.ndim == 2 and value.strides[0] == 0:  # one row viewed T times: check the row
            value = value[:1]  # (a mutated horizon of 10**12 loads; a T x M copy would not fit)
        finite = value[np.isfinite(value)]
        assert spec.optional or finite.size == value.size, spec.name
        assert (finite >= spec.lo).all() and (finite <= spec.hi).all(), spec.name
        if spec.at_most is not None:  # lead times within the horizon
            assert (finite <= getattr(inst, spec.at_most)).all(), spec.name
        if spec.kind is Kind.WHOLE:
            assert (np.floor(finite) == finite).all(), spec.name
    rates = inst.arrival_rate[:1] if inst.arrival_rate.strides[0] == 0 else inst.arrival_rate
    assert (inst.price > 0).all() and (rates > 0).all()
    assert (inst.rec_attraction >= inst.base_attraction).all()
    if inst.warehouse_capacity is not None:
        assert math.isfinite(inst.warehouse_capacity) and inst.warehouse_capacity >= 0
        assert inst.warehouse_capacity <= FIELD["warehouse_capacity"].hi
    money = [inst.price, inst.unit_cost, inst.holding_cost, inst.salvage_value]
    assert all((m <= MAX_MONEY).all() for m in money)  # finite arithmetic (issue 22)
    if t > 10**6:  # a mutated horizon: re-validating would copy its T x M rates
        return
    again = make_instance(**inst.fields())  # re-validates
    np.testing.assert_array_equal(again.arrival_rate, inst.arrival_rate)


def check_file(path: Path) -> None:
    try:
        inst = load_instance(path)
    except InstanceError as exc:
        assert str(path) in str(exc), str(exc)
        return
    assert_passes_the_checks(inst)


ODD_VALUES = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        -1,
        -0.5,
        0,
        0.5,
        1.5,
        2**70,
        10**12,
        1e300,
        1e-300,
        True,
        "x",
        "",
        [1.0],
        [],
        [[1.0, 2.0]],
        {"a": 1},
    ]
)


def _paths(d: dict[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [(k,) for k in d]
    for table in ("product", "segment"):
        rows = d.get(table)
        for j, row in enumerate(rows if isinstance(rows, list) else []):
            if isinstance(row, dict):
                out += [(table, j, k) for k in row]
    return out


def _mutate_dict(d: dict[str, Any], data: st.DataObject) -> None:
    op = data.draw(st.sampled_from(["drop", "set", "dup_row", "drop_row", "list_entry", "add"]))
    paths = _paths(d)
    if not paths:
        return
    path = data.draw(st.sampled_from(paths))
    parent: Any = d
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "drop":
        del parent[key]
    elif op == "set":
        parent[key] = data.draw(ODD_VALUES)
    elif op == "add":
        parent[data.draw(st.sampled_from(["colour", "price", "arrival_rate", "name"]))] = 1.0
    elif op in ("dup_row", "drop_row"):
        table = data.draw(st.sampled_from(["product", "segment"]))
        rows = d.get(table)
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            if op == "dup_row":
                rows.append(dict(rows[0]))
            else:
                rows.pop()
    elif isinstance(parent[key], list) and parent[key]:
        j = data.draw(st.integers(0, len(parent[key]) - 1))
        parent[key][j] = data.draw(ODD_VALUES)


def _mutate_bytes(raw: bytes, data: st.DataObject) -> bytes:
    op = data.draw(st.sampled_from(["truncate", "flip", "random", "empty"]))
    if op == "empty" or not raw:
        return b""
    if op == "truncate":
        return raw[: data.draw(st.integers(0, len(raw) - 1))]
    if op == "flip":
        buf = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(buf) - 1))
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(buf)
    return data.draw(st.binary(min_size=1, max_size=200))


def _toml_text(d: dict[str, Any]) -> bytes:
    try:
        return tomli_w.dumps(d).encode()
    except (TypeError, ValueError):  # a value TOML cannot hold: write it as a string
        return tomli_w.dumps({"note": repr(d)}).encode()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_mutated_toml_files_load_or_fail_clearly(data: st.DataObject) -> None:
    inst = data.draw(st.sampled_from(VALID))
    d = instance_to_dict(inst)
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate_dict(d, data)
    raw = _toml_text(d)
    if data.draw(st.booleans()):
        raw = _mutate_bytes(raw, data)
    if data.draw(st.booleans()):  # duplicate a line: a repeated key
        lines = raw.split(b"\n")
        j = data.draw(st.integers(0, len(lines) - 1))
        raw = b"\n".join([*lines[: j + 1], lines[j], *lines[j + 1 :]])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_bytes(raw)
        check_file(path)


def _npz_arrays(inst: Instance) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        p = save_instance(inst, Path(tmp) / "x.npz")
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


NPZ_VALID = [_npz_arrays(inst) for inst in VALID]


def _mutate_arrays(arrays: dict[str, np.ndarray], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(arrays)))
    op = data.draw(
        st.sampled_from(["drop", "unknown", "text", "odd", "shape", "scalar", "shorten", "empty"])
    )
    a = arrays[key]
    if op == "drop":
        del arrays[key]
    elif op == "unknown":
        arrays["colour"] = np.zeros(2)
    elif op == "text":
        arrays[key] = np.full(a.shape, "x")
    elif op == "odd" and a.dtype.kind in "iuf":
        b = a.astype(float).copy()
        flat = b.reshape(-1)
        if flat.size:
            j = data.draw(st.integers(0, flat.size - 1))
            flat[j] = data.draw(st.sampled_from([math.nan, math.inf, -1.0, 0.5, 1.5, 0.0, 2e300]))
        arrays[key] = b
    elif op == "shape":
        arrays[key] = np.stack([a, a])
    elif op == "scalar":
        arrays[key] = np.asarray(a.reshape(-1)[0] if a.size else 0.0)
    elif op == "shorten" and a.ndim >= 1 and a.shape[0] > 0:
        arrays[key] = a[:-1]
    elif op == "empty":
        arrays[key] = np.zeros((0, *a.shape[1:]), dtype=a.dtype)


@FUZZ
@given(data=st.data())
def test_mutated_npz_files_load_or_fail_clearly(data: st.DataObject) -> None:
    arrays = dict(data.draw(st.sampled_from(NPZ_VALID)))
    for _ in range(data.draw(st.integers(0, 3))):
        _mutate_arrays(arrays, data)
    buf = io.BytesIO()
    saver = np.savez_compressed if data.draw(st.booleans()) else np.savez
    saver(buf, allow_pickle=False, **arrays)
    raw = buf.getvalue()
    if data.draw(st.booleans()):
        raw = _mutate_bytes(raw, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.npz"
        path.write_bytes(raw)
        check_file(path)


def test_a_pickled_object_array_is_refused_without_running_it(tmp_path):
    """Object arrays need pickle; the loader never unpickles."""
    arrays = dict(NPZ_VALID[0])
    arrays["product_names"] = np.array(["A", "B"], dtype=object)
    path = tmp_path / "obj.npz"
    np.savez(path, **arrays)  # allow_pickle defaults to True when writing
    try:
        load_instance(path)
    except InstanceError as exc:
        assert str(path) in str(exc) and "object" in str(exc).lower()
    else:
        raise AssertionError("an object array was accepted")
