"""The model's money, declared once (docs/model.md, "One period t", step 5).

Every money term of the model is one row of :data:`TERMS`: its name (the column every
result reports it under), its sign (income or cost), the department it belongs to (how the
firm's profit splits between the two agents) and its charges -- which instance field is paid
per unit of which :class:`Flow`. Everything that counts money reads this table:

- per term, for accounts: :func:`term_values` (the simulator's step result, the evaluation's
  columns), :func:`profit` (the reward) and :func:`department_profits` (the reward split
  between the agents); per term and product, :func:`product_term_values` (each product's
  money: the agents' reward per decision, :mod:`coordopt.rl.credit`);
- per flow, for optimisers: :func:`unit_values`, the money one unit of each flow brings,
  which is all the fluid program (Pyomo and bulk), the exact dynamic program, the
  per-product programs, the catalog solver and the newsvendor ratio need.

A new term charged on an existing flow -- a per-order handling fee, say -- is one row here
(``Term("handling_cost", COST, Department.REPLENISHMENT, (Charge("handling_fee",
Flow.PLACED),))``) and its data field on :class:`~coordopt.instance.Instance`; every consumer
picks it up. A term on a new flow (a cost per recommendation) also needs that flow defined
where it enters the mathematics: the simulator's step and each program's variables.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from coordopt.instance import Instance

A = TypeVar("A", bound=Any)  # a number, a numpy array or a torch tensor: money

INCOME = 1
COST = -1


class Flow(enum.StrEnum):
    """A quantity of one period and product that money is paid on, in units.

    The order is the accounting order of a period (the fluid objective's
    ``p s - c q - h I - b l - F z``); :attr:`LEFT_OVER` is paid once, after the last period.
    """

    SOLD = "sold"  # s: sales
    ORDERED = "ordered"  # q: units ordered (paid when ordered, arriving or not)
    HELD = "held"  # I: units on hand at the end of a period
    LOST = "lost"  # l: demand not met
    PLACED = "placed"  # 1{q > 0}: an order placed (z, relaxed, in the fluid program)
    LEFT_OVER = "left_over"  # I_T: units on hand after the last period


PERIOD_FLOWS: tuple[Flow, ...] = tuple(flow for flow in Flow if flow is not Flow.LEFT_OVER)
"""The flows paid every period, in accounting order (left-over stock is paid once, at the end)."""


class Department(enum.StrEnum):
    """Who answers for a term: operations (orders) or marketing (slates); the names are the
    agents' (``coordopt.marl.AGENTS``)."""

    REPLENISHMENT = "replenishment"
    RECOMMENDATION = "recommendation"


@dataclass(frozen=True)
class Charge:
    """``coefficient`` (an :class:`~coordopt.instance.Instance` field, money per unit, ``(N,)``)
    paid on every unit of ``flow``."""

    coefficient: str
    flow: Flow


@dataclass(frozen=True)
class Term:
    """One money term: reported as ``name``, added with ``sign`` (:data:`INCOME` or
    :data:`COST`) to the profit and to ``department``'s share, worth the sum of its charges."""

    name: str
    sign: int
    department: Department
    charges: tuple[Charge, ...]


TERMS: tuple[Term, ...] = (
    Term("revenue", INCOME, Department.RECOMMENDATION, (Charge("price", Flow.SOLD),)),
    Term(
        "ordering_cost",
        COST,
        Department.REPLENISHMENT,
        (Charge("unit_cost", Flow.ORDERED), Charge("fixed_order_cost", Flow.PLACED)),
    ),
    Term("holding_cost", COST, Department.REPLENISHMENT, (Charge("holding_cost", Flow.HELD),)),
    Term(
        "lost_sale_cost",
        COST,
        Department.REPLENISHMENT,
        (Charge("lost_sale_penalty", Flow.LOST),),
    ),
    Term("salvage", INCOME, Department.REPLENISHMENT, (Charge("salvage_value", Flow.LEFT_OVER),)),
)
"""The declaration: every money term of the model, in accounting order."""


def term_names() -> tuple[str, ...]:
    """The terms' names, in order: the columns of every per-term result."""
    return tuple(term.name for term in TERMS)


def coefficients_on(flow: Flow) -> tuple[str, ...]:
    """The instance fields paid per unit of ``flow``."""
    return tuple(c.coefficient for term in TERMS for c in term.charges if c.flow is flow)


def _charges(inst: Instance) -> Iterator[tuple[Term, Charge, np.ndarray]]:
    """Every charge of every term with its coefficient in ``inst``, ``(N,)`` float64."""
    for term in TERMS:
        for charge in term.charges:
            yield term, charge, np.asarray(getattr(inst, charge.coefficient), dtype=np.float64)


def coefficients(inst: Instance) -> dict[str, np.ndarray]:
    """Every charge's coefficient that is not zero for all products, by field name,
    ``(N,)`` float64 (a charge absent here adds nothing: :func:`term_values`)."""
    return {charge.coefficient: value for _, charge, value in _charges(inst) if value.any()}


def unit_values(inst: Instance) -> dict[Flow, np.ndarray]:
    """Money one unit of each flow brings, per product, ``(N,)`` float64: the signed sum of
    the coefficients charged on it (income > 0, cost < 0; zeros where nothing is charged).

    The optimisers' view of the declaration: the value of a sale is ``[SOLD]``, serving one
    more unit of demand gains ``[SOLD] - [LOST]``, the unit cost is ``-[ORDERED]``.
    """
    parts: dict[Flow, list[np.ndarray]] = {flow: [] for flow in Flow}
    for term, charge, value in _charges(inst):
        parts[charge.flow].append(term.sign * value)
    return {flow: sum(p[1:], p[0]) if p else np.zeros(inst.n_products) for flow, p in parts.items()}


def term_values(
    flows: Mapping[Flow, A | None], coefficients: Mapping[str, A], zero: A
) -> dict[str, A]:
    """Every term's money, unsigned, by name: the sum over its charges of ``flow @
    coefficient`` (``(..., N) @ (N,)``, numpy or torch).

    A charge adds nothing where its flow is None (not there this period: ``LEFT_OVER`` before
    the last) or its coefficient is missing from ``coefficients`` (zero everywhere:
    :func:`coefficients`); a term with nothing charged is ``zero``.
    """
    return _charged(flows, coefficients, zero, operator.matmul)


def product_term_values(
    flows: Mapping[Flow, A | None], coefficients: Mapping[str, A], zero: A
) -> dict[str, A]:
    """Every term's money per product, unsigned, by name, ``(..., N)``: the sum over its charges
    of ``flow * coefficient``, whose sum over products is :func:`term_values` (``zero``: a term
    with nothing charged, ``(..., N)``). :func:`profit` of them is each product's profit."""
    return _charged(flows, coefficients, zero, operator.mul)


def _charged(
    flows: Mapping[Flow, A | None],
    coefficients: Mapping[str, A],
    zero: A,
    pay: Callable[[A, A], A],
) -> dict[str, A]:
    """Every term's ``pay(flow, coefficient)`` summed over its charges (see :func:`term_values`)."""
    out = {}
    for term in TERMS:
        parts = [
            pay(flow, coefficients[c.coefficient])
            for c in term.charges
            if (flow := flows[c.flow]) is not None and c.coefficient in coefficients
        ]
        out[term.name] = sum(parts[1:], parts[0]) if parts else zero
    return out


def _signed_total(values: Mapping[str, A], terms: Sequence[Term]) -> A:
    """``sum sign * value`` over ``terms``: the first income, then every other term in the
    declaration's order -- the accounting the project has always done, to the last bit:
    ``p s - c q - h I - b l + v I_T`` for the firm, ``v I_T - c q - h I - b l`` for operations."""
    first = next((term for term in terms if term.sign == INCOME), terms[0])
    total = values[first.name] if first.sign == INCOME else -values[first.name]
    for term in terms:
        if term is not first:
            value = values[term.name]
            total = total + value if term.sign == INCOME else total - value
    return total


def profit(values: Mapping[str, A]) -> A:
    """The firm's profit from its terms' values (:func:`term_values`)."""
    return _signed_total(values, TERMS)


def department_profits(values: Mapping[str, A]) -> dict[str, A]:
    """Each department's share of the profit, by name (the two add up to :func:`profit`):
    the departmental rewards of the agents."""
    return {
        dept.value: _signed_total(values, [t for t in TERMS if t.department is dept])
        for dept in Department
    }
