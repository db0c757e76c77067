"""Realization: everything random in one episode, drawn before it starts.

A :class:`Realization` is drawn from a scenario with one seed and is independent
of every action, so every policy and the hindsight MILP face the same trace for
the same seed (common random numbers). Shapes use ``T`` days, ``R`` regions,
``K`` SKUs, ``W`` warehouses, ``D`` delivery lanes, ``L`` transfer lanes and
``J`` lots per (region, SKU).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from envs import kernels, sampler
from envs.forecast import demand_cap, expected_demand, expected_supply
from envs.lots import split_lots

if TYPE_CHECKING:  # annotations only: Scenario.sample calls this module
    from envs.network import Network
    from envs.scenario import Scenario


@dataclass(eq=False)
class Realization:
    seed: int
    demand: np.ndarray  # [T, R, K] int, units ordered
    transit_days: np.ndarray  # [T, D] int, realized transit time (tau) of a unit shipped that day, delay included
    abnormal_delay: np.ndarray  # [T, D] int, extra days from an abnormal delay (0 = none)
    delivery_open: np.ndarray  # [T, D] bool, lane usable that day
    transfer_lead: np.ndarray  # [T, L] int >= 1, days until a transfer dispatched that day arrives
    transfer_open: np.ndarray  # [T, L] bool
    supply: np.ndarray  # [T, W, K] int, supplier units arriving on hand at the start of day t

    def lots(self, lots_per_batch: int) -> np.ndarray:
        """Lot sizes ``[T, R, K, J]`` (units); see :func:`envs.lots.split_lots`."""
        return split_lots(self.demand, lots_per_batch)

    def copy(self) -> Realization:
        return Realization(**{f.name: _copy(getattr(self, f.name)) for f in fields(self)})

    def equals(self, other: Realization) -> bool:
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def check(self, scenario: Scenario) -> None:
        """Raise ``ValueError`` naming the field unless this could be a draw of ``scenario``.

        Checks shapes, dtypes and the ranges the environment relies on: demand within
        :func:`demand_cap`, supplier units within twice the schedule (so the observation stays
        inside its bounds), transfer leads within the lanes' longest lead (so a transfer is
        always still to arrive), and no negative entries.
        """
        net = scenario.network
        T, R, K, W, D, L = net.T, net.R, net.K, net.W, net.D, net.L
        expected = {
            "demand": ((T, R, K), "i"),
            "transit_days": ((T, D), "i"),
            "abnormal_delay": ((T, D), "i"),
            "delivery_open": ((T, D), "b"),
            "transfer_lead": ((T, L), "i"),
            "transfer_open": ((T, L), "b"),
            "supply": ((T, W, K), "i"),
        }
        for name, (shape, kind) in expected.items():
            x = getattr(self, name)
            kind_name = "bool" if kind == "b" else "integer"
            if (
                not isinstance(x, np.ndarray)
                or x.shape != shape
                or x.dtype.kind not in (kind + ("u" if kind == "i" else ""))
            ):
                got = f"{type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}"
                raise ValueError(f"realization.{name} must be a {kind_name} array of shape {shape}; got {got}")
            if kind == "i" and x.size and x.min() < 0:
                raise ValueError(f"realization.{name} has negative entries; allowed: >= 0")
        cap = demand_cap(expected_demand(scenario))
        if np.any(self.demand > cap):
            raise ValueError("realization.demand exceeds its cap floor(3 * mean + 20) somewhere; allowed: 0..cap")
        if np.any(self.supply.sum(axis=0) > 2 * expected_supply(scenario).sum(axis=0)):
            raise ValueError("realization.supply exceeds twice the scheduled supplier units of a (hub, SKU)")
        if L and (self.transfer_lead.min() < 1 or self.transfer_lead.max() > net.tl_max_lead):
            raise ValueError(f"realization.transfer_lead must lie in 1..{net.tl_max_lead} days (the longest lead time)")


def _copy(x):
    return x.copy() if isinstance(x, np.ndarray) else x


@dataclass(frozen=True, eq=False)
class Trace:
    """A realization compiled against its network: what the day transition and the hindsight MILP read.

    Both take the lot sizes and the per-unit Eq.1 and Eq.4 of every day and lane from here, so
    the env and the MILP price a shipment with the same numbers (:func:`envs.reward.lane_unit_costs`).
    """

    realization: Realization
    lots: np.ndarray  # [T, R*K*J] int, lot sizes in slot order
    unit_route_cost: np.ndarray  # [T, D] USD per unit shipped that day on the lane: Eq.1
    unit_delay_penalty: np.ndarray  # [T, D] USD per unit shipped that day on the lane: Eq.4
    # the arrays envs.kernels reads, each with a batch axis of 1 (views, no copy): lots, route, delay,
    # transit days, abnormal delay, delivery open, transfer open, transfer lead, supply
    batch: tuple[np.ndarray, ...] = ()

    @staticmethod
    def compile(net: Network, real: Realization) -> Trace:
        """The trace of ``real`` (:func:`envs.kernels.compile_trace`: lots and per-unit costs, the formulas of
        :mod:`envs.lots` and :mod:`envs.reward`), its arrays in the kernels' dtypes."""
        i64, f64, flag = np.int64, np.float64, np.bool_
        lots, route, delay = np.empty((net.T, net.n_lots), i64), np.empty((net.T, net.D), f64), np.empty((net.T, net.D))
        transit = np.ascontiguousarray(real.transit_days, dtype=i64)
        kernels.compile_trace(kernels.kernel_net(net), np.ascontiguousarray(real.demand, dtype=i64), transit, lots,
                              route, delay)  # fmt: skip
        arrays = (lots, route, delay, transit) + tuple(
            np.ascontiguousarray(x, dtype=dtype)
            for x, dtype in (
                (real.abnormal_delay, i64), (real.delivery_open, flag),
                (real.transfer_open, flag), (real.transfer_lead, i64), (real.supply, i64),
            )
        )  # fmt: skip
        return Trace(real, lots, route, delay, tuple(a[None] for a in arrays))


def sample_realization(scenario: Scenario, seed: int) -> Realization:
    """Draw a realization; the draw order is fixed so a seed always gives the same trace.

    ``seed``: an integer >= 0. The draws are those of ``np.random.default_rng(seed)`` in the order of
    :func:`envs.sampler.draw` (compiled; bit for bit numpy's stream). A deterministic scenario has no draws.
    """
    net = scenario.network
    T, D, L = net.T, net.D, net.L
    mean_demand = net.mean_demand
    if scenario.deterministic:
        mid = (net.dl_transit_range.sum(axis=1) + 1) // 2  # envs.forecast.midpoint, per lane
        lead = (net.tl_lead_range.sum(axis=1) + 1) // 2
        return Realization(
            seed=int(seed),
            demand=np.floor(mean_demand + 0.5).astype(np.int64),
            transit_days=np.tile(mid, (T, 1)).astype(np.int64),
            abnormal_delay=np.zeros((T, D), dtype=np.int64),
            delivery_open=np.ones((T, D), dtype=bool),
            transfer_lead=np.tile(lead, (T, 1)).astype(np.int64).reshape(T, L),
            transfer_open=np.ones((T, L), dtype=bool),
            supply=expected_supply(scenario),
        )
    # the draws (their order, the distributions, numpy's default_rng(seed) stream bit for bit): envs.sampler.draw
    R, K, W = net.R, net.K, net.W
    demand, supply = np.empty((T, R, K), np.int64), np.empty((T, W, K), np.int64)
    transit, abnormal, open_d = np.empty((T, D), np.int64), np.empty((T, D), np.int64), np.empty((T, D), np.bool_)
    lead, open_t = np.empty((T, L), np.int64), np.empty((T, L), np.bool_)
    sampler.draw_one(sampler.entropy_words(seed), sampler.model(net), demand, transit, abnormal, open_d, lead, open_t,
                     supply)  # fmt: skip
    return Realization(
        seed=int(seed),
        demand=demand,
        transit_days=transit,
        abnormal_delay=abnormal,
        delivery_open=open_d,
        transfer_lead=lead,
        transfer_open=open_t,
        supply=supply,
    )
