"""Reward semantics, written once: the five terms, their signs, and their per-unit formulas.

Everything that prices a decision reads this module: the env's day transition
(:mod:`envs.dynamics`), the forecast a policy plans with (:mod:`envs.forecast`: the expected
cost of a unit over a lane's transit distribution), the hindsight and rolling MILPs' inputs and
objective (:mod:`baselines.plan_input`, :mod:`baselines.milp_model`) and the report's tables
and plots. Adding a term means adding it here, computing it in the transition and giving the
MILP its coefficients.

Each term is reported as a positive magnitude except Eq.2 (revenue, the only one that can be
negative: a transfer costs more than its profit increment), and the reward is their signed sum
``eq2 - eq1 - eq4 - eq5 - lost`` (:func:`signed_sum`). Money is USD, time whole days, stock units.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np


@dataclass(frozen=True)
class Term:
    name: str  # key in info["reward_terms"], in result files and columns
    sign: int  # +1: adds to the reward, -1: subtracted from it
    paper: str  # the source paper's equation ("" for none)
    label: str  # for tables and plots
    meaning: str  # the formula, for the env's manual


TERMS = (
    Term(
        "eq1_route_cost", -1, "Eq.1", "route cost (Eq.1)",
        "per unit shipped on lane d, ``distance*cost_per_km + tau*cost_per_transit_day + fee_per_order`` "
        "with ``tau`` the realized transit days",
    ),
    Term(
        "eq2_allocation_revenue", +1, "Eq.2", "allocation revenue (Eq.2)",
        "``unit_profit`` per unit sold, plus for each transfer of ``q`` units "
        "``q*profit_per_unit - (q*cost_per_unit + fixed_cost)`` (the only term that can be negative)",
    ),
    Term(
        "eq4_delay_penalty", -1, "Eq.4", "delay penalty (Eq.4)",
        "per unit shipped, ``alpha*(tau - t0)^2`` when ``tau > t0`` (``t0`` = the region's ``sla_days``)",
    ),
    Term(
        "eq5_imbalance", -1, "Eq.5", "inventory imbalance (Eq.5)",
        "``lambda * sum_{w,k} ((I*_wk - I_wk)/I*_wk)^2`` on end-of-day on hand, over warehouse/SKU pairs "
        "with ``I* > 0``",
    ),
    Term("lost_sales", -1, "", "lost sales", "``lost_sale_penalty`` per unit of demand rejected or not shippable"),
)  # fmt: skip
TERM_NAMES = tuple(t.name for t in TERMS)
TERM_SIGN = {t.name: t.sign for t in TERMS}  # reward = sum(TERM_SIGN[n] * terms[n])
TERM_LABELS = {t.name: t.label for t in TERMS}

X = TypeVar("X", float, np.ndarray)


def signed_sum(terms: Mapping[str, X]) -> X:
    """The reward from its terms (floats, or arrays of one shape such as MILP objective coefficients).

    Revenue terms are added first, then each cost is subtracted in :data:`TERM_NAMES` order, so for
    today's terms this is exactly ``eq2 - eq1 - eq4 - eq5 - lost`` (the same rounding everywhere).
    """
    total = 0.0
    for t in TERMS:
        if t.sign > 0:
            total = total + terms[t.name]
    for t in TERMS:
        if t.sign < 0:
            total = total - terms[t.name]
    return total


def manual(indent: str = "    ") -> str:
    """The Rewards list of the env's manual (its docstring is built from this), wrapped at 100 columns."""
    items = []
    for t in TERMS:
        head = f"* ``{t.name}``" + (f" ({t.paper})" if t.paper else "") + f": {t.meaning};"
        items.append(textwrap.fill(head, 100, initial_indent=indent, subsequent_indent=indent + "  "))
    return "\n".join(items)


# ------------------------------------------------------------------ per-unit formulas
def route_cost_per_unit(base_cost, cost_per_day, transit_days):
    """Eq.1 of one unit (USD): ``base_cost + transit_days * cost_per_day``; broadcasts, e.g. ``[D]`` with ``[T, D]``.

    ``base_cost`` = ``distance_km * cost_per_km + fee_per_order`` of the lane (``Network.dl_unit_base_cost``).
    """
    return base_cost + transit_days * cost_per_day


def delay_penalty_per_unit(alpha: float, transit_days, sla_days):
    """Eq.4 of one unit (USD): ``alpha * max(transit_days - sla_days, 0)^2``; broadcasts."""
    late = np.maximum(transit_days - sla_days, 0)
    return alpha * (late * late)


def lane_unit_costs(net, transit_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Eq.1, Eq.4)`` per unit shipped on each delivery lane, each of the shape of ``transit_days``
    (``[..., D]``: e.g. ``[T, D]`` for a whole realization, ``[D]`` for one day), with the network's
    coefficients (``net`` is an :class:`envs.network.Network`)."""
    route = route_cost_per_unit(net.dl_unit_base_cost, net.dl_cost_per_day, transit_days)
    delay = delay_penalty_per_unit(net.delay_alpha, transit_days, net.sla_days[net.dl_region])
    return route, delay


def transfer_revenue(net, lanes: np.ndarray, quantity: np.ndarray) -> np.ndarray:
    """Eq.2 of sending ``quantity > 0`` units on transfer lanes ``lanes`` (USD, elementwise, may be negative):
    ``q * (profit_per_unit - cost_per_unit) - fixed_cost``."""
    return quantity * (net.tl_profit_per_unit[lanes] - net.tl_cost_per_unit[lanes]) - net.tl_fixed_cost[lanes]


def imbalance_per_pair(lam: float, target, on_hand):
    """Eq.5 of ``(warehouse, SKU)`` pairs with ``target > 0``, elementwise (USD): ``lam * ((I* - I) / I*)^2``."""
    gap = (target - on_hand) / target
    return lam * (gap * gap)


def imbalance(net, on_hand: np.ndarray) -> float:
    """Eq.5 of a day (USD): :func:`imbalance_per_pair` summed over the scored pairs of ``on_hand`` ``[W, K]``."""
    pairs = imbalance_per_pair(net.imbalance_lambda, net.scored_target, on_hand.reshape(-1)[net.scored_index])
    return float(np.sum(pairs))
