"""The problem instance of docs/model.md: load, validate, save.

An :class:`Instance` holds every datum of the integrated inventory-recommendation model as
numpy arrays (products along the last axis, segments along the first). Every consumer in
coordopt -- simulator, Pyomo models, dynamic program, agents -- reads this one object.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from coordopt.io import atomic_write_bytes


class Stockout(enum.StrEnum):
    """What happens to a product with no stock.

    LOST: it stays choosable and its demand is lost. HIDDEN: a product with no stock at the
    start of the period is removed from every choice set, so its demand flows elsewhere.
    """

    LOST = "lost"
    HIDDEN = "hidden"


class InstanceError(ValueError):
    """Bad instance data; the message names the file, the item, the field and the fix."""


@dataclass(frozen=True, eq=False)
class Instance:
    """One integrated inventory-recommendation problem (docs/model.md, "Data").

    Product arrays have shape ``(N,)``; segment arrays ``(M,)``; attractions ``(M, N)``.
    ``max_order`` is ``inf`` where a product has no order cap; ``warehouse_capacity`` is
    ``None`` when there is none.
    """

    name: str
    horizon: int
    discount: float
    slate_size: int
    stockout: Stockout
    warehouse_capacity: float | None
    product_names: tuple[str, ...]
    price: np.ndarray
    unit_cost: np.ndarray
    holding_cost: np.ndarray
    lost_sale_penalty: np.ndarray
    lead_time: np.ndarray
    initial_inventory: np.ndarray
    salvage_value: np.ndarray
    fixed_order_cost: np.ndarray
    max_order: np.ndarray
    segment_names: tuple[str, ...]
    arrival_rate: np.ndarray
    base_attraction: np.ndarray
    rec_attraction: np.ndarray
    no_purchase: np.ndarray

    @property
    def n_products(self) -> int:
        return len(self.product_names)

    @property
    def n_segments(self) -> int:
        return len(self.segment_names)

    @property
    def max_lead_time(self) -> int:
        return int(self.lead_time.max()) if self.n_products else 0

    @property
    def effective_slate_size(self) -> int:
        """Slots that can actually be filled: ``min(K, N)``."""
        return min(self.slate_size, self.n_products)

    def replace(self, **changes: Any) -> Instance:
        """A validated copy with some fields changed (arrays are converted and checked)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(changes)
        return make_instance(**data)

    def summary(self) -> str:
        return (
            f"{self.name}: {self.n_products} products, {self.n_segments} segments, "
            f"T={self.horizon}, K={self.slate_size}, stockout={self.stockout.value}, "
            f"lead times {int(self.lead_time.min())}..{self.max_lead_time}"
        )


# --------------------------------------------------------------------------- validation

_PRODUCT_FIELDS: dict[str, Any] = {
    "name": None,
    "price": None,  # required
    "unit_cost": None,  # required
    "holding_cost": 0.0,
    "lost_sale_penalty": 0.0,
    "lead_time": 0,
    "initial_inventory": 0,
    "salvage_value": 0.0,
    "fixed_order_cost": 0.0,
    "max_order": None,
}
_SEGMENT_FIELDS: dict[str, Any] = {
    "name": None,
    "arrival_rate": None,  # required
    "base_attraction": None,  # required
    "rec_attraction": None,
    "no_purchase": 1.0,
}
_GLOBAL_FIELDS: dict[str, Any] = {
    "name": None,
    "horizon": None,  # required
    "discount": 1.0,
    "slate_size": 1,
    "stockout": "lost",
    "warehouse_capacity": None,
    "product": None,
    "segment": None,
}


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _fail(source: str | None, item: str, field: str, value: Any, allowed: str) -> InstanceError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InstanceError(f"{_where(source)}{item}: field '{field}' = {shown} is invalid; {allowed}")


def _as_float(
    src: str | None, item: str, field: str, value: Any, *, lo: float = 0.0, strict: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(src, item, field, value, "expected a number")
    v = float(value)
    if not math.isfinite(v) or v < lo or (strict and v <= lo):
        raise _fail(
            src, item, field, value, f"expected a finite number {'>' if strict else '>='} {lo:g}"
        )
    return v


def _as_int(src: str | None, item: str, field: str, value: Any, *, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _fail(src, item, field, value, f"expected a whole number >= {lo}")
    if value < lo:
        raise _fail(src, item, field, value, f"expected a whole number >= {lo}")
    return int(value)


def _check_keys(
    src: str | None, item: str, table: Mapping[str, Any], allowed: Mapping[str, Any]
) -> None:
    for key in table:
        if key not in allowed:
            raise InstanceError(
                f"{_where(src)}{item}: unknown key '{key}'; allowed keys are "
                f"{', '.join(sorted(allowed))}"
            )


def _array(
    src: str | None, item: str, field: str, value: Any, n: int, *, lo: float = 0.0
) -> np.ndarray:
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise _fail(src, item, field, value, f"expected an array of {n} numbers (one per product)")
    if len(value) != n:
        raise _fail(
            src,
            item,
            field,
            value,
            f"expected {n} entries (one per product, in product order), got {len(value)}",
        )
    return np.array(
        [_as_float(src, f"{item}, entry {j}", field, x, lo=lo) for j, x in enumerate(value)]
    )


def instance_from_dict(data: Mapping[str, Any], source: str | None = None) -> Instance:
    """Build and validate an :class:`Instance` from the TOML layout of docs/model.md."""
    _check_keys(source, "top level", data, _GLOBAL_FIELDS)
    for req in ("horizon",):
        if req not in data:
            raise InstanceError(f"{_where(source)}top level: missing required key '{req}'")
    products = data.get("product", [])
    segments = data.get("segment", [])
    if not isinstance(products, list) or not products:
        raise InstanceError(
            f"{_where(source)}top level: at least one [[product]] table is required"
        )
    if not isinstance(segments, list) or not segments:
        raise InstanceError(
            f"{_where(source)}top level: at least one [[segment]] table is required"
        )
    n = len(products)

    cols: dict[str, list[Any]] = {k: [] for k in _PRODUCT_FIELDS}
    for i, p in enumerate(products):
        item = (
            f"product {i + 1} ({p.get('name', 'unnamed')!s})"
            if isinstance(p, Mapping)
            else f"product {i + 1}"
        )
        if not isinstance(p, Mapping):
            raise InstanceError(f"{_where(source)}{item}: expected a table")
        _check_keys(source, item, p, _PRODUCT_FIELDS)
        for req in ("price", "unit_cost"):
            if req not in p:
                raise InstanceError(f"{_where(source)}{item}: missing required key '{req}'")
        cols["name"].append(str(p.get("name", f"P{i + 1}")))
        cols["price"].append(_as_float(source, item, "price", p["price"], strict=True))
        for f in (
            "unit_cost",
            "holding_cost",
            "lost_sale_penalty",
            "salvage_value",
            "fixed_order_cost",
        ):
            cols[f].append(_as_float(source, item, f, p.get(f, _PRODUCT_FIELDS[f])))
        for f in ("lead_time", "initial_inventory"):
            cols[f].append(_as_int(source, item, f, p.get(f, _PRODUCT_FIELDS[f])))
        mo = p.get("max_order")
        cols["max_order"].append(math.inf if mo is None else _as_int(source, item, "max_order", mo))

    seg_cols: dict[str, list[Any]] = {k: [] for k in _SEGMENT_FIELDS}
    for k, s in enumerate(segments):
        item = (
            f"segment {k + 1} ({s.get('name', 'unnamed')!s})"
            if isinstance(s, Mapping)
            else f"segment {k + 1}"
        )
        if not isinstance(s, Mapping):
            raise InstanceError(f"{_where(source)}{item}: expected a table")
        _check_keys(source, item, s, _SEGMENT_FIELDS)
        for req in ("arrival_rate", "base_attraction"):
            if req not in s:
                raise InstanceError(f"{_where(source)}{item}: missing required key '{req}'")
        seg_cols["name"].append(str(s.get("name", f"S{k + 1}")))
        seg_cols["arrival_rate"].append(
            _as_float(source, item, "arrival_rate", s["arrival_rate"], strict=True)
        )
        seg_cols["no_purchase"].append(
            _as_float(source, item, "no_purchase", s.get("no_purchase", 1.0), strict=True)
        )
        base = _array(source, item, "base_attraction", s["base_attraction"], n)
        rec = (
            _array(source, item, "rec_attraction", s["rec_attraction"], n)
            if "rec_attraction" in s
            else base.copy()
        )
        seg_cols["base_attraction"].append(base)
        seg_cols["rec_attraction"].append(rec)

    stockout_raw = data.get("stockout", "lost")
    try:
        stockout = Stockout(stockout_raw)
    except ValueError:
        raise _fail(
            source, "top level", "stockout", stockout_raw, "allowed values are 'lost' and 'hidden'"
        ) from None
    cap = data.get("warehouse_capacity")
    return make_instance(
        name=str(data.get("name", Path(source).stem if source else "instance")),
        horizon=_as_int(source, "top level", "horizon", data["horizon"], lo=1),
        discount=_as_float(source, "top level", "discount", data.get("discount", 1.0), strict=True),
        slate_size=_as_int(source, "top level", "slate_size", data.get("slate_size", 1), lo=1),
        stockout=stockout,
        warehouse_capacity=None
        if cap is None
        else _as_float(source, "top level", "warehouse_capacity", cap),
        product_names=tuple(cols["name"]),
        price=cols["price"],
        unit_cost=cols["unit_cost"],
        holding_cost=cols["holding_cost"],
        lost_sale_penalty=cols["lost_sale_penalty"],
        lead_time=cols["lead_time"],
        initial_inventory=cols["initial_inventory"],
        salvage_value=cols["salvage_value"],
        fixed_order_cost=cols["fixed_order_cost"],
        max_order=cols["max_order"],
        segment_names=tuple(seg_cols["name"]),
        arrival_rate=seg_cols["arrival_rate"],
        base_attraction=np.array(seg_cols["base_attraction"]).reshape(len(segments), n),
        rec_attraction=np.array(seg_cols["rec_attraction"]).reshape(len(segments), n),
        no_purchase=seg_cols["no_purchase"],
        source=source,
    )


def make_instance(*, source: str | None = None, **fields: Any) -> Instance:
    """Convert arrays, check shapes and ranges, and return a frozen :class:`Instance`.

    Used by the TOML loader, the generator and :meth:`Instance.replace`; the per-item checks
    of the loader give friendlier messages, these are the array-level guarantees.
    """
    f = dict(fields)
    f["stockout"] = Stockout(f["stockout"])
    n = len(f["product_names"])
    m = len(f["segment_names"])
    for key in (
        "price",
        "unit_cost",
        "holding_cost",
        "lost_sale_penalty",
        "salvage_value",
        "fixed_order_cost",
        "max_order",
    ):
        f[key] = np.asarray(f[key], dtype=np.float64).reshape(n)
    for key in ("lead_time", "initial_inventory"):
        f[key] = np.asarray(f[key], dtype=np.int64).reshape(n)
    for key in ("arrival_rate", "no_purchase"):
        f[key] = np.asarray(f[key], dtype=np.float64).reshape(m)
    for key in ("base_attraction", "rec_attraction"):
        arr = np.asarray(f[key], dtype=np.float64)
        if arr.shape != (m, n):
            raise InstanceError(
                f"{_where(source)}{key}: shape {arr.shape}, expected (segments, products) = ({m}, {n})"
            )
        f[key] = arr
    checks = [
        ("price", f["price"] > 0, "> 0"),
        ("unit_cost", f["unit_cost"] >= 0, ">= 0"),
        ("holding_cost", f["holding_cost"] >= 0, ">= 0"),
        ("lost_sale_penalty", f["lost_sale_penalty"] >= 0, ">= 0"),
        ("salvage_value", f["salvage_value"] >= 0, ">= 0"),
        ("fixed_order_cost", f["fixed_order_cost"] >= 0, ">= 0"),
        ("max_order", f["max_order"] >= 0, ">= 0"),
        ("lead_time", f["lead_time"] >= 0, ">= 0"),
        ("initial_inventory", f["initial_inventory"] >= 0, ">= 0"),
    ]
    for key, ok, rule in checks:
        bad = np.flatnonzero(~ok)
        if bad.size:
            i = int(bad[0])
            raise _fail(
                source,
                f"product {i + 1} ({f['product_names'][i]})",
                key,
                f[key][i].item(),
                f"must be {rule}",
            )
    for key, arr, rule in (
        ("arrival_rate", f["arrival_rate"], "> 0"),
        ("no_purchase", f["no_purchase"], "> 0"),
    ):
        bad = np.flatnonzero(~(arr > 0))
        if bad.size:
            k = int(bad[0])
            raise _fail(
                source,
                f"segment {k + 1} ({f['segment_names'][k]})",
                key,
                arr[k].item(),
                f"must be {rule}",
            )
    for key in ("base_attraction", "rec_attraction"):
        cells = np.argwhere(~(f[key] >= 0) | ~np.isfinite(f[key]))
        if cells.size:
            k, i = (int(x) for x in cells[0])
            raise _fail(
                source,
                f"segment {k + 1} ({f['segment_names'][k]}), product {i + 1}",
                key,
                f[key][k, i].item(),
                "must be finite and >= 0",
            )
    cells = np.argwhere(f["rec_attraction"] < f["base_attraction"])
    if cells.size:
        k, i = (int(x) for x in cells[0])
        raise _fail(
            source,
            f"segment {k + 1} ({f['segment_names'][k]}), product {i + 1} ({f['product_names'][i]})",
            "rec_attraction",
            f["rec_attraction"][k, i].item(),
            f"must be >= base_attraction ({f['base_attraction'][k, i]:g}): a recommendation cannot lower a product's weight",
        )
    if not (0 < f["discount"] <= 1):
        raise _fail(source, "top level", "discount", f["discount"], "must lie in (0, 1]")
    if int(f["horizon"]) < 1:
        raise _fail(source, "top level", "horizon", f["horizon"], "must be a whole number >= 1")
    if int(f["slate_size"]) < 1:
        raise _fail(
            source, "top level", "slate_size", f["slate_size"], "must be a whole number >= 1"
        )
    cap = f.get("warehouse_capacity")
    if cap is not None and not (float(cap) >= 0):
        raise _fail(source, "top level", "warehouse_capacity", cap, "must be >= 0")
    for arr in (f[k] for k in f if isinstance(f[k], np.ndarray)):
        arr.setflags(write=False)
    f.update(
        name=str(f["name"]),
        horizon=int(f["horizon"]),
        discount=float(f["discount"]),
        slate_size=int(f["slate_size"]),
        warehouse_capacity=None if cap is None else float(cap),
        product_names=tuple(f["product_names"]),
        segment_names=tuple(f["segment_names"]),
    )
    return Instance(**{fld.name: f[fld.name] for fld in dataclasses.fields(Instance)})


# --------------------------------------------------------------------------- files


def instance_to_dict(inst: Instance) -> dict[str, Any]:
    """The TOML layout of docs/model.md (inverse of :func:`instance_from_dict`)."""
    out: dict[str, Any] = {
        "name": inst.name,
        "horizon": inst.horizon,
        "discount": inst.discount,
        "slate_size": inst.slate_size,
        "stockout": inst.stockout.value,
    }
    if inst.warehouse_capacity is not None:
        out["warehouse_capacity"] = inst.warehouse_capacity
    out["product"] = []
    for i, name in enumerate(inst.product_names):
        p: dict[str, Any] = {
            "name": name,
            "price": float(inst.price[i]),
            "unit_cost": float(inst.unit_cost[i]),
            "holding_cost": float(inst.holding_cost[i]),
            "lost_sale_penalty": float(inst.lost_sale_penalty[i]),
            "lead_time": int(inst.lead_time[i]),
            "initial_inventory": int(inst.initial_inventory[i]),
            "salvage_value": float(inst.salvage_value[i]),
        }
        if inst.fixed_order_cost[i] > 0:
            p["fixed_order_cost"] = float(inst.fixed_order_cost[i])
        if math.isfinite(inst.max_order[i]):
            p["max_order"] = int(inst.max_order[i])
        out["product"].append(p)
    out["segment"] = [
        {
            "name": name,
            "arrival_rate": float(inst.arrival_rate[k]),
            "base_attraction": [float(x) for x in inst.base_attraction[k]],
            "rec_attraction": [float(x) for x in inst.rec_attraction[k]],
            "no_purchase": float(inst.no_purchase[k]),
        }
        for k, name in enumerate(inst.segment_names)
    ]
    return out


def save_instance(inst: Instance, path: str | Path) -> Path:
    """Write ``inst`` atomically as TOML (``.toml``) or compact arrays (``.npz``)."""
    path = Path(path)
    if path.suffix == ".npz":
        import io

        buf = io.BytesIO()
        arrays = {f.name: getattr(inst, f.name) for f in dataclasses.fields(inst)}
        arrays["stockout"] = np.array(inst.stockout.value)
        arrays["warehouse_capacity"] = np.array(
            np.nan if inst.warehouse_capacity is None else inst.warehouse_capacity
        )
        arrays["product_names"] = np.array(inst.product_names)
        arrays["segment_names"] = np.array(inst.segment_names)
        np.savez_compressed(
            buf, allow_pickle=False, **{k: np.asarray(v) for k, v in arrays.items()}
        )
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix == ".toml":
        atomic_write_bytes(path, tomli_w.dumps(instance_to_dict(inst)).encode())
    else:
        raise InstanceError(f"{path}: unknown instance format '{path.suffix}'; use .toml or .npz")
    return path


def _load_npz(path: Path) -> Instance:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise InstanceError(f"{path}: not a readable .npz instance ({exc})") from None
    names = {f.name for f in dataclasses.fields(Instance)}
    missing = names - set(data)
    if missing:
        raise InstanceError(f"{path}: missing arrays {sorted(missing)}")
    extra = set(data) - names
    if extra:
        raise InstanceError(f"{path}: unknown arrays {sorted(extra)}; allowed: {sorted(names)}")
    cap = float(data["warehouse_capacity"])
    fields = {k: data[k] for k in names}
    fields.update(
        name=str(data["name"]),
        horizon=int(data["horizon"]),
        discount=float(data["discount"]),
        slate_size=int(data["slate_size"]),
        stockout=str(data["stockout"]),
        warehouse_capacity=None if math.isnan(cap) else cap,
        product_names=tuple(str(x) for x in data["product_names"]),
        segment_names=tuple(str(x) for x in data["segment_names"]),
    )
    return make_instance(source=str(path), **fields)


def named_instances() -> list[str]:
    """Names of the instances shipped with coordopt (loadable wherever a path is accepted)."""
    folder = resources.files("coordopt.data") / "instances"
    return sorted(
        {Path(str(p.name)).stem for p in folder.iterdir() if p.name.endswith((".toml", ".npz"))}
    )


def load_instance(spec: str | Path | Instance) -> Instance:
    """Load an instance from a ``.toml`` / ``.npz`` path or a bundled name (``tiny``, ...)."""
    if isinstance(spec, Instance):
        return spec
    path = Path(spec)
    if not path.exists() and path.suffix == "" and str(spec) in named_instances():
        folder = resources.files("coordopt.data") / "instances"
        for ext in (".toml", ".npz"):
            cand = folder / f"{spec}{ext}"
            if cand.is_file():
                path = Path(str(cand))
                break
    if not path.exists():
        raise InstanceError(
            f"{spec}: no such file, and not a bundled instance name "
            f"(bundled: {', '.join(named_instances())})"
        )
    if path.suffix == ".npz":
        return _load_npz(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InstanceError(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InstanceError(f"{path}: not a text file; expected TOML") from None
    return instance_from_dict(data, source=str(path))
