"""The problem instance of docs/model.md: its fields declared once; load, validate, save.

:class:`Instance` is the single declaration of the model's data: every field carries its
:class:`FieldSpec` (scope, kind, default, rule, doc) in its dataclass metadata, and
everything else derives from that list (:data:`FIELDS`): the TOML and ``.npz`` formats,
validation and its messages, defaults, :func:`make_instance`, sub-catalogs
(:meth:`Instance.take_products`), and the simulator's and fluid program's arrays.

Arrays are numpy: products along the last axis, segments before them, periods first
(``arrival_rate`` is ``(T, M)``). To add a product attribute, add one field to
:class:`Instance` with its spec, then use it where the mathematics needs it.

Every source -- a TOML file, a compact ``.npz`` file, Python keyword arguments -- goes through
one validator, :func:`make_instance`, with the same rules and the same messages
(``file: item: field 'f' = value is invalid; rule``).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import math
import stat
import sys
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


# --------------------------------------------------------------------------- declaration


class Scope(enum.StrEnum):
    """What a field is indexed by (its shape in an :class:`Instance`)."""

    GLOBAL = "global"  # one value
    PRODUCT = "product"  # (N,), one entry in each [[product]] table
    SEGMENT = "segment"  # (M,), one entry in each [[segment]] table
    PERIOD_SEGMENT = "period-segment"  # (T, M); per segment one number or T numbers
    SEGMENT_PRODUCT = "segment-product"  # (M, N); per segment N numbers, in product order

    @property
    def table(self) -> str | None:
        """The TOML array of tables that holds the field (``None``: top level)."""
        return {Scope.GLOBAL: None, Scope.PRODUCT: "product"}.get(self, "segment")


class Kind(enum.StrEnum):
    """The values a field holds."""

    REAL = "real"  # finite float
    WHOLE = "whole"  # whole number (stored int64, or float64 where it may be unbounded)
    TEXT = "text"  # a non-empty string (names; optional per-product labels: categories)
    STOCKOUT = "stockout"  # a :class:`Stockout` mode


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()
"""Default of a field that every instance must give."""
MAX_WHOLE = 2**53
"""Largest whole number accepted (exact in float64)."""
MAX_MONEY = 1e9
"""Largest price or cost per unit (or per order) accepted: far above any real price, and it
keeps every profit, its square (the variance of an evaluation) and the fluid program's
objective coefficients finite and within HiGHS's tolerances."""
MIN_POSITIVE = 1e-6
"""Smallest value of a quantity that must be positive (price, arrival rate)."""
MAX_RATE = 1e9
"""Most customers per segment and period."""
WEIGHT_RANGE = (1e-3, 1e3)
"""The no-purchase weight's range; product weights lie in [0, 1e3]. Choice weights are
relative (multiplying a segment's weights by one factor changes no probability), so this
loses nothing: it bounds a product's weight at 10^6 times the no-purchase weight, within which
the fluid program solves to HiGHS's tolerances (measured on ``small``: at 10^9 its bound
was off by up to 0.1%, at 10^15 by up to 9%). Rescale a segment's weights together to bring them inside."""


@dataclass(frozen=True)
class FieldSpec:
    """One field of the model: how it is indexed, what it holds, its default and its rule.

    ``lo`` / ``hi`` bound the values (``lo_open``: strictly above ``lo``); ``at_least`` names
    a field of the same shape that bounds this one from below, ``at_most`` a global field
    that bounds it from above (``why``: the reason, ending the message); ``default_from`` names the
    field whose value is the default; ``optional`` fields may be absent (``None`` globally,
    ``inf`` per product: no limit); ``key`` is the name in a TOML table when it differs.
    """

    scope: Scope
    kind: Kind
    doc: str
    default: Any = REQUIRED
    lo: float = 0.0
    lo_open: bool = False
    hi: float = math.inf
    at_least: str | None = None
    at_most: str | None = None
    why: str = ""
    default_from: str | None = None
    optional: bool = False
    key: str | None = None
    name: str = ""  # the attribute, filled in from the dataclass

    @property
    def file_key(self) -> str:
        """The key in the TOML layout (``name`` inside a product or segment table)."""
        return self.key or self.name

    @property
    def rule(self) -> str:
        """What a valid value is, in words (the end of every message about this field)."""
        if self.kind is Kind.TEXT:
            return "expected a non-empty string"
        if self.kind is Kind.STOCKOUT:
            return f"allowed values are {' and '.join(repr(s.value) for s in Stockout)}"
        what = "a whole number" if self.kind is Kind.WHOLE else "a finite number"
        if self.hi < math.inf:
            interval = f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        else:
            interval = f"{'>' if self.lo_open else '>='} {self.lo:g}"
        limit = f" (at most {MAX_WHOLE})" if self.kind is Kind.WHOLE else ""
        return f"expected {what} {interval}{limit}"


def _spec(scope: Scope, kind: Kind, doc: str, **rule: Any) -> dict[str, FieldSpec]:
    return {"spec": FieldSpec(scope, kind, doc, **rule)}


_G, _P, _S = Scope.GLOBAL, Scope.PRODUCT, Scope.SEGMENT
_R, _W, _TXT = Kind.REAL, Kind.WHOLE, Kind.TEXT


@dataclass(frozen=True, eq=False)
class Instance:
    """One integrated inventory-recommendation problem (docs/model.md, "Data").

    Product arrays have shape ``(N,)``; segment arrays ``(M,)``; attractions ``(M, N)``;
    ``arrival_rate`` ``(T, M)`` (a constant rate is repeated). ``max_order`` is ``inf``
    where a product has no order cap; ``warehouse_capacity`` is ``None`` when there is none;
    ``category`` is ``None`` when no product has one (a label: no decision reads it).
    Build one with :func:`make_instance` or :func:`load_instance`, never directly.
    """

    name: str = field(
        metadata=_spec(_G, _TXT, "Instance name (default: file name)", default="instance")
    )
    horizon: int = field(metadata=_spec(_G, _W, "Periods T", lo=1))
    discount: float = field(metadata=_spec(_G, _R, "gamma", default=1.0, lo_open=True, hi=1.0))
    slate_size: int = field(metadata=_spec(_G, _W, "Slots K per segment", default=1, lo=1))
    stockout: Stockout = field(metadata=_spec(_G, Kind.STOCKOUT, "Mode", default=Stockout.LOST))
    warehouse_capacity: float | None = field(
        metadata=_spec(
            _G, _R, "On-hand units after arrivals", default=None, optional=True, hi=MAX_WHOLE
        )
    )
    product_names: tuple[str, ...] = field(
        metadata=_spec(_P, _TXT, "Product name", default="P{}", key="name")
    )
    category: tuple[str, ...] | None = field(
        metadata=_spec(
            _P,
            _TXT,
            "Product category (a label; every product or none)",
            default=None,
            optional=True,
        )
    )
    price: np.ndarray = field(metadata=_spec(_P, _R, "Price p_i", lo=MIN_POSITIVE, hi=MAX_MONEY))
    unit_cost: np.ndarray = field(metadata=_spec(_P, _R, "Unit cost c_i", hi=MAX_MONEY))
    holding_cost: np.ndarray = field(
        metadata=_spec(_P, _R, "Per unit held", default=0.0, hi=MAX_MONEY)
    )
    lost_sale_penalty: np.ndarray = field(
        metadata=_spec(_P, _R, "Per lost unit", default=0.0, hi=MAX_MONEY)
    )
    lead_time: np.ndarray = field(
        metadata=_spec(
            _P,
            _W,
            "Periods L_i to arrival",
            default=0,
            at_most="horizon",
            why="an order with a longer lead time would never arrive before the end",
        )
    )
    initial_inventory: np.ndarray = field(metadata=_spec(_P, _W, "Start stock", default=0))
    salvage_value: np.ndarray = field(
        metadata=_spec(_P, _R, "Per unit left", default=0.0, hi=MAX_MONEY)
    )
    fixed_order_cost: np.ndarray = field(
        metadata=_spec(_P, _R, "Per order", default=0.0, hi=MAX_MONEY)
    )
    max_order: np.ndarray = field(
        metadata=_spec(_P, _W, "Order cap (absent: inf)", default=math.inf, optional=True)
    )
    segment_names: tuple[str, ...] = field(
        metadata=_spec(_S, _TXT, "Segment name", default="S{}", key="name")
    )
    arrival_rate: np.ndarray = field(
        metadata=_spec(
            Scope.PERIOD_SEGMENT, _R, "Customers per period", lo=MIN_POSITIVE, hi=MAX_RATE
        )
    )
    base_attraction: np.ndarray = field(
        metadata=_spec(
            Scope.SEGMENT_PRODUCT,
            _R,
            "MNL weight w^N_ki, not recommended",
            hi=WEIGHT_RANGE[1],
        )
    )
    rec_attraction: np.ndarray = field(
        metadata=_spec(
            Scope.SEGMENT_PRODUCT,
            _R,
            "MNL weight w^R_ki, recommended",
            default_from="base_attraction",
            at_least="base_attraction",
            hi=WEIGHT_RANGE[1],
        )
    )
    no_purchase: np.ndarray = field(
        metadata=_spec(_S, _R, "w_k0", default=1.0, lo=WEIGHT_RANGE[0], hi=WEIGHT_RANGE[1])
    )

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

    @property
    def seasonal(self) -> bool:
        """Whether some segment's arrival rate changes over the periods (a constant table is
        stored as one row viewed T times, stride 0: no T x M comparison is needed)."""
        rate = self.arrival_rate
        return rate.strides[0] != 0 and bool((rate != rate[:1]).any())

    @property
    def mean_arrival_rate(self) -> np.ndarray:
        """Each segment's arrival rate averaged over the periods, ``(M,)`` (exactly its
        rate when constant)."""
        return self.arrival_rate.mean(axis=0) if self.seasonal else self.arrival_rate[0]

    def fields(self) -> dict[str, Any]:
        """Every declared field's value, by attribute name (the input of :func:`make_instance`)."""
        return {spec.name: getattr(self, spec.name) for spec in FIELDS}

    def replace(self, **changes: Any) -> Instance:
        """A validated copy with some fields changed (arrays are converted and checked).

        A new ``horizon`` keeps constant arrival rates; a seasonal profile must then be
        given anew (``arrival_rate``), since it has one entry per period.
        """
        data = self.fields()
        if "horizon" in changes and "arrival_rate" not in changes:
            if self.seasonal and int(changes["horizon"]) != self.horizon:
                raise InstanceError(
                    f"{self.name}: a new horizon needs a new seasonal arrival_rate "
                    f"(it has {self.horizon} periods); pass arrival_rate as well"
                )
            data["arrival_rate"] = self.arrival_rate[0]
        data.update(changes)
        return make_instance(**data)

    def take_products(self, index: Sequence[int] | np.ndarray, **changes: Any) -> Instance:
        """The sub-catalog of products ``index`` (in that order), validated; every
        per-product field is restricted to it, other fields are kept unless ``changes``."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        data: dict[str, Any] = {}
        for spec in FIELDS:
            value = getattr(self, spec.name)
            if spec.scope is Scope.PRODUCT and value is None:
                continue  # an absent optional label stays absent
            if spec.scope is Scope.PRODUCT:
                data[spec.name] = [value[i] for i in idx] if spec.kind is _TXT else value[idx]
            elif spec.scope is Scope.SEGMENT_PRODUCT:
                data[spec.name] = value[:, idx]
        return self.replace(**{**data, **changes})

    def summary(self) -> str:
        return (
            f"{self.name}: {self.n_products} products, {self.n_segments} segments, "
            f"T={self.horizon}, K={self.slate_size}, stockout={self.stockout.value}, "
            f"lead times {int(self.lead_time.min())}..{self.max_lead_time}"
            + (", seasonal arrivals" if self.seasonal else "")
        )


FIELDS: tuple[FieldSpec, ...] = tuple(
    dataclasses.replace(f.metadata["spec"], name=f.name) for f in dataclasses.fields(Instance)
)
"""The declaration: every field of :class:`Instance`, in order, with its spec."""
FIELD: dict[str, FieldSpec] = {spec.name: spec for spec in FIELDS}


def instance_values(inst: Instance, target: type) -> dict[str, Any]:
    """The instance's fields that the dataclass ``target`` also declares, by name.

    How consumers (``SimParams``, ``FluidData``) take the data they use without listing it:
    a new field reaches them by declaring it in both places.
    """
    wanted = {f.name for f in dataclasses.fields(target)}
    return {spec.name: getattr(inst, spec.name) for spec in FIELDS if spec.name in wanted}


# --------------------------------------------------------------------------- validation


class _Missing:
    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()
"""Marks an absent value (a key left out of one TOML table, say)."""


UNHASHED = ("name", "category")
"""Labels that no decision reads, left out of :func:`content_hash`: the instance's name and
the product categories (annotating a catalog does not make it another problem)."""


def content_hash(inst: Instance) -> str:
    """SHA-256 of the instance's data: every field but the labels of :data:`UNHASHED`, numbers
    as float64, so equal data hash equal whatever object, name or dtype holds them (run
    directories record it; the DP cache keys on it)."""
    h = hashlib.sha256()
    for f in dataclasses.fields(inst):
        if f.name in UNHASHED:
            continue
        value = getattr(inst, f.name)
        h.update(f.name.encode() + b"\0")
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value, dtype=np.float64)
            h.update(repr(arr.shape).encode() + arr.tobytes())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            h.update(repr(float(value)).encode())
        else:
            h.update(repr(getattr(value, "value", value)).encode())
    return h.hexdigest()


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _show(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _fail(source: str | None, item: str, field: str, value: Any, rule: str) -> InstanceError:
    return InstanceError(
        f"{_where(source)}{item}: field '{field}' = {_show(value)} is invalid; {rule}"
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


class _Context:
    """What the validator knows while it works through the fields in order."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.values: dict[str, Any] = {}

    def names(self, scope: Scope) -> tuple[str, ...] | None:
        key = "product_names" if scope is Scope.PRODUCT else "segment_names"
        return self.values.get(key)

    def item(self, scope: Scope, index: tuple[int, ...], period: bool = False) -> str:
        """``product 2 (B)``, ``segment 1 (x), product 2 (B)``, ``segment 1 (x), period 3``."""
        if scope is Scope.GLOBAL:
            return "top level"

        def one(kind: Scope, j: int) -> str:
            names = self.names(kind)
            label = f" ({names[j]})" if names is not None and j < len(names) else ""
            return f"{kind.value} {j + 1}{label}"

        if scope is Scope.PRODUCT:
            return one(Scope.PRODUCT, index[0])
        if scope is Scope.SEGMENT_PRODUCT:
            parts = [one(Scope.SEGMENT, index[0])]
            if len(index) > 1:
                parts.append(one(Scope.PRODUCT, index[1]))
            return ", ".join(parts)
        if scope is Scope.PERIOD_SEGMENT and period and len(index) == 2:
            return f"{one(Scope.SEGMENT, index[1])}, period {index[0] + 1}"
        return one(Scope.SEGMENT, index[-1])

    def fail(self, spec: FieldSpec, index: tuple[int, ...], value: Any, rule: str) -> InstanceError:
        return _fail(self.source, self.item(spec.scope, index), spec.name, value, rule)


def _scalar(value: Any) -> Any:
    """A 0-d array as its Python scalar; anything else unchanged."""
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _as_table(value: Any) -> Any:
    """A Python sequence (or object array) as a list; numeric arrays stay arrays."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        return value
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return list(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def _number(ctx: _Context, spec: FieldSpec, x: Any, item: str) -> float:
    """One entry as a float: a real number (not a bool, not a string), else a clear error."""
    x = _scalar(x)
    if not _is_number(x):
        got = (
            f"a list of {len(x)}" if isinstance(x, (list, tuple, np.ndarray)) else type(x).__name__
        )
        raise _fail(ctx.source, item, spec.name, x, f"expected one number, got {got}")
    try:
        return float(x)
    except OverflowError:
        raise _fail(ctx.source, item, spec.name, x, spec.rule) from None


def _numbers(
    ctx: _Context, spec: FieldSpec, value: Any, shape: tuple[int, ...], what: tuple[str, ...]
) -> np.ndarray:
    """Nested ``value`` as a float64 array of ``shape``, element types checked one by one.

    Numeric arrays must have the shape; nested sequences are walked so that an entry of the
    wrong length or type is named (``what`` describes each axis). ``MISSING`` entries take
    the field's default.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        if value.shape != shape:
            raise InstanceError(
                f"{_where(ctx.source)}top level: field '{spec.name}' has shape {value.shape}, "
                f"expected {shape} ({'; '.join(what)})"
            )
        return value.astype(np.float64)
    out = np.empty(shape)

    def fill(v: Any, index: tuple[int, ...]) -> None:
        depth = len(index)
        if v is MISSING:
            out[index] = _default_entry(ctx, spec, index)  # checked with the rest below
            return
        if depth == len(shape):
            out[index] = _number(ctx, spec, v, ctx.item(spec.scope, index))
            return
        table = _as_table(_scalar(v))
        if table is None or len(table) != shape[depth]:
            got = "a single value" if table is None else f"{len(table)}"
            item = ctx.item(spec.scope, index) if depth else "top level"
            raise _fail(
                ctx.source,
                item,
                spec.name,
                v,
                f"expected {shape[depth]} entries ({what[depth]}), got {got}",
            )
        for j, x in enumerate(table):
            fill(x, (*index, j))

    fill(value, ())
    return out


def _default_entry(ctx: _Context, spec: FieldSpec, index: tuple[int, ...]) -> Any:
    if spec.default_from is not None:
        return ctx.values[spec.default_from][index]
    if spec.default is REQUIRED:
        item = ctx.item(spec.scope, index) if index else "top level"
        raise InstanceError(f"{_where(ctx.source)}{item}: missing required key '{spec.file_key}'")
    return spec.default


def _check_values(
    ctx: _Context,
    spec: FieldSpec,
    arr: np.ndarray,
    period: np.ndarray | None = None,
    shown: Any = MISSING,
) -> None:
    """Finiteness, range, integrality and ``at_least`` of every entry of ``arr``.

    ``period[k]``: segment k's rate was given per period (name the period in messages).
    """
    unbounded = np.isposinf(arr) if spec.optional else np.zeros(arr.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        lo_ok = arr > spec.lo if spec.lo_open else arr >= spec.lo
        ok = unbounded | (np.isfinite(arr) & lo_ok & (arr <= spec.hi))
        if spec.kind is Kind.WHOLE:
            ok &= unbounded | ((np.floor(arr) == arr) & (arr <= MAX_WHOLE))
    bad = np.argwhere(~ok)
    if bad.size:
        index = tuple(int(j) for j in bad[0])
        seasonal = period is not None and bool(period[index[-1]])
        item = ctx.item(spec.scope, index, period=seasonal)
        raise _fail(
            ctx.source, item, spec.name, arr[index] if shown is MISSING else shown, spec.rule
        )
    if spec.at_least is not None:
        floor = ctx.values[spec.at_least]
        bad = np.argwhere(arr < floor)
        if bad.size:
            index = tuple(int(j) for j in bad[0])
            raise ctx.fail(
                spec,
                index,
                arr[index],
                f"must be >= {spec.at_least} ({floor[index]:g}): a recommendation cannot "
                "lower a product's weight",
            )
    if spec.at_most is not None:
        ceiling = ctx.values[spec.at_most]
        bad = np.argwhere(arr > ceiling)
        if bad.size:
            index = tuple(int(j) for j in bad[0])
            raise ctx.fail(
                spec, index, arr[index], f"must be <= {spec.at_most} ({ceiling:g}): {spec.why}"
            )


def _names(ctx: _Context, spec: FieldSpec, value: Any) -> tuple[str, ...]:
    """Product or segment names: a non-empty list of distinct non-empty strings."""
    kind = spec.scope.value
    if value is MISSING:
        raise InstanceError(f"{_where(ctx.source)}top level: missing required key '{spec.name}'")
    table = _as_table(_scalar(value))
    if table is None or isinstance(table, np.ndarray):
        raise _fail(ctx.source, "top level", spec.name, value, f"expected a list of {kind} names")
    if not table:
        raise InstanceError(
            f"{_where(ctx.source)}top level: at least one {kind} is required "
            f"(a [[{kind}]] table in a TOML file)"
        )
    names: list[str] = []
    seen: dict[str, int] = {}
    for j, x in enumerate(table):
        x = spec.default.format(j + 1) if x is MISSING else _scalar(x)
        item = f"{kind} {j + 1}"
        if not isinstance(x, str) or not x:
            raise _fail(ctx.source, item, spec.file_key, x, spec.rule)
        if x in seen:
            raise _fail(
                ctx.source,
                item,
                spec.file_key,
                x,
                f"names must be unique: {kind} {seen[x] + 1} has the same name",
            )
        seen[x] = j
        names.append(str(x))
    return tuple(names)


def _labels(ctx: _Context, spec: FieldSpec, value: Any) -> tuple[str, ...] | None:
    """Optional per-product labels (categories): ``None`` when absent from every product,
    else one non-empty string per product (labels may repeat)."""
    if value is MISSING or value is None:
        return None
    n = len(ctx.values["product_names"])
    table = _as_table(_scalar(value))
    if table is None or isinstance(table, np.ndarray) or len(table) != n:
        got = "a single value" if table is None else f"{len(table)}"
        raise _fail(
            ctx.source,
            "top level",
            spec.name,
            value,
            f"expected {n} entries (one string per product), got {got}",
        )
    if all(x is MISSING for x in table):
        return None
    for j, x in enumerate(table):
        item = ctx.item(spec.scope, (j,))
        if x is MISSING:
            raise InstanceError(
                f"{_where(ctx.source)}{item}: missing key '{spec.file_key}'; give every product "
                f"a {spec.file_key} or none"
            )
        if not isinstance(_scalar(x), str) or not x:
            raise _fail(ctx.source, item, spec.file_key, x, spec.rule)
    return tuple(str(_scalar(x)) for x in table)


def _global(ctx: _Context, spec: FieldSpec, value: Any) -> Any:
    value = _scalar(value)
    if value is MISSING or (spec.optional and value is None):
        return _default_entry(ctx, spec, ())
    if spec.kind is Kind.TEXT:
        if not isinstance(value, str) or not value:
            raise ctx.fail(spec, (), value, spec.rule)
        return str(value)
    if spec.kind is Kind.STOCKOUT:
        if not isinstance(value, str) or value not in {s.value for s in Stockout}:
            raise ctx.fail(spec, (), value, spec.rule)
        return Stockout(value)
    x = _number(ctx, spec, value, "top level")
    _check_values(ctx, spec, np.array([x]), shown=value)
    if math.isinf(x):  # an optional limit given as inf: no limit, stored as its default
        return _default_entry(ctx, spec, ())
    return int(x) if spec.kind is Kind.WHOLE else x


def _arrival_rates(ctx: _Context, spec: FieldSpec, value: Any) -> np.ndarray:
    """``(T, M)`` from a ``(T, M)`` array, or per segment one number or a list of T."""
    t_n, names = ctx.values["horizon"], ctx.names(Scope.SEGMENT)
    assert names is not None
    m = len(names)
    if value is MISSING:
        _default_entry(ctx, spec, ())
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == 2:
        rates = _numbers(ctx, spec, value, (t_n, m), ("one per period", "one per segment"))
        _check_values(ctx, spec, rates, period=np.ones(m, dtype=bool))
        return rates
    table = _as_table(_scalar(value))
    if table is None or len(table) != m:
        got = "a single value" if table is None else f"{len(table)}"
        raise _fail(
            ctx.source,
            "top level",
            spec.name,
            value,
            f"expected {m} entries (one per segment: a number, or a list of one per "
            f"period), got {got}; a 2-D numpy array is read as (periods, segments)",
        )
    entries = [
        _default_entry(ctx, spec, (k,)) if e is MISSING else _scalar(e) for k, e in enumerate(table)
    ]
    if all(_as_table(e) is None for e in entries):  # no seasonality: one row, viewed T times
        row = np.array(
            [_number(ctx, spec, e, ctx.item(spec.scope, (k,))) for k, e in enumerate(entries)]
        )
        _check_values(ctx, spec, row[None, :], period=np.zeros(m, dtype=bool))
        return np.broadcast_to(row, (t_n, m))  # no T x M copy, however long the horizon
    columns = [_as_table(entry) for entry in entries]
    for k, column in enumerate(columns):  # before the T x M array: the horizon may be a typo
        if column is not None and len(column) != t_n:
            raise ctx.fail(
                spec,
                (k,),
                entries[k],
                f"a seasonal rate needs one value per period: expected {t_n} (the horizon), "
                f"got {len(column)}",
            )
    rates = np.empty((t_n, m))
    seasonal = np.array([column is not None for column in columns])
    for k, (entry, column) in enumerate(zip(entries, columns, strict=True)):
        if column is None:
            rates[:, k] = _number(ctx, spec, entry, ctx.item(spec.scope, (k,)))
            continue
        for t, x in enumerate(column):
            rates[t, k] = _number(ctx, spec, x, ctx.item(spec.scope, (t, k), period=True))
    _check_values(ctx, spec, rates, period=seasonal)
    return rates


_AXES = {
    Scope.PRODUCT: ("one per product",),
    Scope.SEGMENT: ("one per segment",),
    Scope.SEGMENT_PRODUCT: ("one per segment", "one per product, in product order"),
}


def _shape(ctx: _Context, scope: Scope) -> tuple[int, ...]:
    n = len(ctx.values.get("product_names", ()))
    if scope is Scope.PRODUCT:
        return (n,)
    m = len(ctx.values["segment_names"])
    return (m,) if scope is Scope.SEGMENT else (m, n)


def make_instance(*, source: str | None = None, **fields: Any) -> Instance:
    """Validate and convert ``fields`` (by attribute name) into a frozen :class:`Instance`.

    The one validator of every source (files, generator, :meth:`Instance.replace`).
    Absent fields take their declared defaults. Values may be numbers, sequences or numpy
    arrays; ``arrival_rate`` may be ``(M,)`` (constant), ``(T, M)``, or a sequence with
    one entry per segment, each a number or a list of T numbers (the TOML form).
    ``source`` (a file name) starts every message.
    """
    unknown = sorted(set(fields) - set(FIELD))
    if unknown:
        raise InstanceError(
            f"{_where(source)}unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELD)}"
        )
    ctx = _Context(source)
    for spec in FIELDS:
        value = fields.get(spec.name, MISSING)
        if spec.scope is Scope.GLOBAL:
            out = _global(ctx, spec, value)
        elif spec.kind is Kind.TEXT:
            out = _labels(ctx, spec, value) if spec.optional else _names(ctx, spec, value)
        elif spec.scope is Scope.PERIOD_SEGMENT:
            out = _arrival_rates(ctx, spec, value)
        else:
            shape = _shape(ctx, spec.scope)
            if value is MISSING:
                value = [MISSING] * shape[0]
            out = _numbers(ctx, spec, value, shape, _AXES[spec.scope])
            _check_values(ctx, spec, out)
            if spec.kind is Kind.WHOLE and not spec.optional:
                out = out.astype(np.int64)
        if isinstance(out, np.ndarray):
            out.setflags(write=False)
        ctx.values[spec.name] = out
    return Instance(**ctx.values)


# --------------------------------------------------------------------------- files

_TOP_KEYS = {spec.file_key for spec in FIELDS if spec.scope is Scope.GLOBAL}


def _table_specs(table: str) -> list[FieldSpec]:
    return [spec for spec in FIELDS if spec.scope.table == table]


def _check_keys(source: str | None, item: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise InstanceError(
                f"{_where(source)}{item}: unknown key '{key}'; allowed keys are "
                f"{', '.join(sorted(allowed))}"
            )


def instance_from_dict(data: Mapping[str, Any], source: str | None = None) -> Instance:
    """Build and validate an :class:`Instance` from the TOML layout of docs/model.md.

    Top-level keys are the global fields; each ``[[product]]`` / ``[[segment]]`` table holds
    one item's fields. The tables become columns and go through :func:`make_instance`.
    """
    if not isinstance(data, Mapping):
        raise InstanceError(f"{_where(source)}top level: expected a table of keys")
    _check_keys(source, "top level", data, _TOP_KEYS | {"product", "segment"})
    columns: dict[str, Any] = {
        spec.name: data[spec.file_key]
        for spec in FIELDS
        if spec.scope is Scope.GLOBAL and spec.file_key in data
    }
    if "name" not in columns and source:
        columns["name"] = Path(source).stem or "instance"
    for table in ("product", "segment"):
        rows = data.get(table, [])
        if not isinstance(rows, list):
            raise _fail(source, "top level", table, rows, f"expected [[{table}]] tables")
        specs = _table_specs(table)
        allowed = {spec.file_key for spec in specs}
        for j, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InstanceError(f"{_where(source)}{table} {j + 1}: expected a table")
            name = row.get("name")
            label = f" ({name})" if isinstance(name, str) else ""
            _check_keys(source, f"{table} {j + 1}{label}", row, allowed)
        for spec in specs:
            columns[spec.name] = [row.get(spec.file_key, MISSING) for row in rows]
    return make_instance(source=source, **columns)


def _constant_rates(inst: Instance) -> np.ndarray:
    """Per segment: whether its arrival rate is the same in every period, ``(M,)``."""
    if not inst.seasonal:
        return np.ones(inst.n_segments, dtype=bool)
    return np.all(inst.arrival_rate == inst.arrival_rate[:1], axis=0)


def instance_to_dict(inst: Instance) -> dict[str, Any]:
    """The TOML layout of docs/model.md (inverse of :func:`instance_from_dict`).

    Absent optional values (no order cap, no warehouse) are left out; a constant arrival
    rate is written as one number, a seasonal one as its list of T values.
    """

    def plain(spec: FieldSpec, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return [plain(spec, v) for v in x]
        if spec.kind is Kind.WHOLE:
            return int(x)
        return x.value if isinstance(x, Stockout) else x if isinstance(x, str) else float(x)

    def present(spec: FieldSpec, x: Any) -> bool:
        absent = x is None or (isinstance(x, (float, np.floating)) and np.isposinf(x))
        return not (spec.optional and absent)

    out: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.scope is Scope.GLOBAL and present(spec, getattr(inst, spec.name)):
            out[spec.file_key] = plain(spec, getattr(inst, spec.name))
    constant = _constant_rates(inst)
    for table, count in (("product", inst.n_products), ("segment", inst.n_segments)):
        rows: list[dict[str, Any]] = [{} for _ in range(count)]
        for spec in _table_specs(table):
            value = getattr(inst, spec.name)
            if value is None:
                continue  # an absent optional label (no categories)
            for j, row in enumerate(rows):
                if spec.scope is Scope.PERIOD_SEGMENT:
                    entry = value[0, j] if constant[j] else value[:, j]
                else:
                    entry = value[j]
                if present(spec, entry):
                    row[spec.file_key] = plain(spec, entry)
        out[table] = rows
    return out


NPZ_MAX_BYTES = 2**31
"""Largest decompressed ``.npz`` instance read (a guard against decompression bombs)."""
TOML_MAX_BYTES = 256 * 2**20
"""Largest TOML instance file read: its parsed Python objects take several times its size
(within the 8 GiB memory guard at this cap); a larger catalog belongs in a ``.npz`` file."""


def _npz_arrays(inst: Instance) -> dict[str, np.ndarray]:
    """The compact layout: one array per field, by attribute name. No order cap is ``inf``,
    no warehouse ``nan``, no categories no array; ``arrival_rate`` is ``(M,)`` when no
    segment is seasonal."""
    out: dict[str, np.ndarray] = {}
    for spec in FIELDS:
        value = getattr(inst, spec.name)
        if value is None and spec.scope is Scope.PRODUCT:
            continue
        if spec.name == "warehouse_capacity" and value is None:
            value = np.nan
        elif spec.scope is Scope.PERIOD_SEGMENT and not inst.seasonal:
            value = value[0]
        elif isinstance(value, Stockout):
            value = value.value
        out[spec.name] = np.asarray(list(value) if isinstance(value, tuple) else value)
    return out


def save_instance(inst: Instance, path: str | Path) -> Path:
    """Write ``inst`` atomically as TOML (``.toml``) or compact arrays (``.npz``)."""
    path = Path(path)
    if path.suffix == ".npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, allow_pickle=False, **_npz_arrays(inst))
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix == ".toml":
        atomic_write_bytes(path, tomli_w.dumps(instance_to_dict(inst)).encode())
    else:
        raise InstanceError(f"{path}: unknown instance format '{path.suffix}'; use .toml or .npz")
    return path


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read without pickle and with sizes checked first.

    Raises ``ValueError`` (or the zip/zlib error) on anything that is not a well-formed
    archive of plain ``.npy`` arrays; the caller turns it into an :class:`InstanceError`.
    """
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if sum(info.file_size for info in members) > NPZ_MAX_BYTES:
            raise ValueError(f"more than {NPZ_MAX_BYTES} bytes once decompressed")
        for info in members:
            key = info.filename.removesuffix(".npy")
            if key == info.filename or key in out:
                raise ValueError(f"unexpected or repeated member '{info.filename}'")
            raw = archive.read(info)
            stream = io.BytesIO(raw)
            version = np.lib.format.read_magic(stream)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = header(stream)
            if dtype.hasobject:
                raise ValueError(f"array '{key}' holds Python objects")
            if math.prod(shape) * dtype.itemsize > len(raw):
                raise ValueError(f"array '{key}' is truncated")
            stream.seek(0)
            out[key] = np.lib.format.read_array(stream, allow_pickle=False)
    return out


def _check_file(path: Path, limit: int) -> None:
    """Refuse, before reading, what cannot be an instance file: anything but a regular file
    (a device such as ``/dev/zero`` or a FIFO would never end) and files over ``limit`` bytes."""
    try:
        info = path.stat()
    except OSError as exc:
        raise InstanceError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
        raise InstanceError(f"{path}: {kind}, not an instance file (.toml or .npz)")
    if info.st_size > limit:
        raise InstanceError(
            f"{path}: {info.st_size:,} bytes, more than an instance file may have "
            f"({limit:,}); write large catalogs as .npz"
        )


def _read_text(path: Path, limit: int) -> str:
    """The text of a regular file of at most ``limit`` bytes (checked before and while reading)."""
    _check_file(path, limit)
    with path.open("rb") as fh:
        raw = fh.read(limit + 1)
    if len(raw) > limit:  # it grew, or its size was not known (a /proc file)
        raise InstanceError(f"{path}: more than {limit:,} bytes; not an instance file")
    return raw.decode()


def _load_npz(path: Path) -> Instance:
    _check_file(path, NPZ_MAX_BYTES)
    try:
        data = _read_npz(path)
    except Exception as exc:  # an untrusted file: any decoding failure is a bad file
        raise InstanceError(
            f"{path}: not a readable .npz instance ({type(exc).__name__}: {exc})"
        ) from None
    fields: dict[str, Any] = dict(data)
    cap = data.get("warehouse_capacity")
    if cap is not None and cap.ndim == 0 and cap.dtype.kind == "f" and np.isnan(cap):
        fields["warehouse_capacity"] = None  # the compact layout's "no warehouse"
    fields.setdefault("name", path.stem)
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
    if path.suffix == "" and str(spec) in named_instances():
        if path.exists():  # a bare bundled name means the bundled instance: say what it hides
            kind = "folder" if path.is_dir() else "file"
            read = "" if path.is_dir() else f" (to read it, pass ./{spec})"
            print(
                f"coordopt: note: {spec!r} names the bundled instance; the {kind} ./{spec} "
                f"here is not read{read}",
                file=sys.stderr,
            )
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
        data = tomllib.loads(_read_text(path, TOML_MAX_BYTES))
    except tomllib.TOMLDecodeError as exc:
        raise InstanceError(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InstanceError(f"{path}: not a text file; expected TOML") from None
    except (OSError, RecursionError) as exc:
        raise InstanceError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    return instance_from_dict(data, source=str(path))
