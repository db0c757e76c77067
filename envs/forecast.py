"""What a policy may know of the future: the scenario's expectations (a leaf module: plain data in, arrays out).

The mean demand, the scheduled supplier units, the demand cap that bounds every realization, and
per lane the distribution of the realized transit time with the expected Eq.1 and Eq.4 cost of a
unit shipped on it (priced by :mod:`envs.reward`). The compiled network (:mod:`envs.network`)
stores these arrays; the sampler (:mod:`envs.realization`) draws around them; greedy and the
rolling-horizon MILP plan with them. ``tests/test_forecast.py`` checks them against the env's
realized costs over many seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from envs.reward import delay_penalty_per_unit, route_cost_per_unit

if TYPE_CHECKING:  # annotations only: the scenario module builds on this one
    from envs.scenario import DeliveryLane, Scenario


def expected_demand(scenario: Scenario) -> np.ndarray:
    """Mean demand ``[T, R, K]`` (float units/day): the forecast every policy may read."""
    T, regions, skus = scenario.horizon_days, scenario.regions, scenario.skus
    days = np.arange(T)
    out = np.zeros((T, len(regions), len(skus)))
    sku_index = {k.name: i for i, k in enumerate(skus)}
    for r, region in enumerate(regions):
        for name, m in region.demand.items():
            rate = m.base_rate * np.asarray(m.weekly)[days % 7] * np.maximum(0.0, 1.0 + m.trend * days)
            for p in m.promotions:
                rate = np.where((days >= p.start_day) & (days <= p.end_day), rate * p.multiplier, rate)
            out[:, r, sku_index[name]] = rate
    return out


def demand_cap(mean: np.ndarray) -> np.ndarray:
    """Largest demand a realization may hold: ``floor(3 * mean + 20)`` units (same shape as ``mean``).

    Poisson demand is truncated there so that the observation has finite documented bounds;
    the cap is more than 20 standard deviations above the mean for any rate, so no sample
    drawn in practice is changed by it.
    """
    return np.floor(3.0 * mean + 20.0).astype(np.int64)


def expected_supply(scenario: Scenario) -> np.ndarray:
    """Scheduled supplier units ``[T, W, K]`` (the plan; the realization may deviate by ``quantity_cv``)."""
    T = scenario.horizon_days
    wh = {w.name: i for i, w in enumerate(scenario.warehouses)}
    sku = {k.name: i for i, k in enumerate(scenario.skus)}
    out = np.zeros((T, len(wh), len(sku)), dtype=np.int64)
    for sh in scenario.supplier_shipments:
        out[sh.first_day : T : sh.period_days, wh[sh.warehouse], sku[sh.sku]] += sh.quantity
    return out


def midpoint(pair: tuple[int, int]) -> int:
    """Integer mean of a day range, rounded half up (the deterministic realization)."""
    return (pair[0] + pair[1] + 1) // 2


def expected_transit_days(
    transit: tuple[int, int], p_abnormal: float, delay: tuple[int, int], deterministic: bool
) -> float:
    """Mean transit days of a lane (what a policy may plan with); the realized value under ``deterministic``."""
    if deterministic:
        return float(midpoint(transit))
    return (transit[0] + transit[1]) / 2 + p_abnormal * (delay[0] + delay[1]) / 2


def expected_lead_days(lead: tuple[int, int], deterministic: bool) -> float:
    """Mean lead time of a transfer lane (days); the realized value under ``deterministic``."""
    return float(midpoint(lead)) if deterministic else sum(lead) / 2


def transit_distribution(lane: DeliveryLane, deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Support (days) and probabilities of a delivery lane's realized transit time.

    The base transit is uniform on ``transit_days``; with probability ``abnormal_delay_prob`` an extra
    delay uniform on ``abnormal_delay_days`` is added (``envs.realization.sample_realization``).
    """
    if deterministic:
        return np.array([midpoint(lane.transit_days)]), np.array([1.0])
    base = np.arange(lane.transit_days[0], lane.transit_days[1] + 1)
    extra = np.arange(lane.abnormal_delay_days[0], lane.abnormal_delay_days[1] + 1)
    p = lane.abnormal_delay_prob
    days = np.concatenate([base, (base[:, None] + extra[None, :]).reshape(-1)])
    prob = np.concatenate(
        [np.full(len(base), (1 - p) / len(base)), np.full(len(base) * len(extra), p / (len(base) * len(extra)))]
    )
    return days, prob


def expected_lane_costs(lane: DeliveryLane, sla_days: int, alpha: float, deterministic: bool) -> tuple[float, float]:
    """``(E[Eq.1], E[Eq.4])`` of one unit shipped on ``lane`` (USD), over its transit distribution."""
    days, prob = transit_distribution(lane, deterministic)
    base = lane.distance_km * lane.cost_per_km + lane.fee_per_order
    route = route_cost_per_unit(base, lane.cost_per_transit_day, days)
    delay = delay_penalty_per_unit(alpha, days, sla_days)
    return float(np.dot(prob, route)), float(np.dot(prob, delay))
