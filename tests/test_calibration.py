"""Calibration of the `table1` preset against Table 1 of the source paper.

The paper's figures are the reference, so they are written here; everything compared with them is
computed from the scenario's lanes (and, as a cross-check, from what the environment charges).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from envs.forecast import transit_distribution
from envs.scenario import load_scenario

# Table 1 of the paper: market -> (avg logistics cost per order, USD; air days; sea days)
TABLE1 = {
    "United States": (6.4, (6, 8), (13, 15)),
    "Europe": (6.7, (7, 9), (14, 17)),
    "Southeast Asia": (4.8, (3, 5), (8, 10)),
    "Latin America": (7.2, (8, 10), (16, 21)),
}
MODE_COLUMN = {"air": 1, "sea": 2}


def typical_mix() -> dict[str, float]:
    """The documented typical mode mix of hub-shipped orders (``TYPICAL_MIX`` in envs/generate.py)."""
    from envs.generate import TYPICAL_MIX

    return TYPICAL_MIX


def hub_lanes(scenario) -> dict[tuple[str, str], int]:
    """(market, mode) -> delivery lane index, for lanes leaving a hub."""
    hubs = {w.name for w in scenario.warehouses if w.kind == "hub"}
    return {(ln.region, ln.mode): d for d, ln in enumerate(scenario.delivery_lanes) if ln.warehouse in hubs}


def test_the_mix_is_air_and_sea_summing_to_one():
    mix = typical_mix()
    assert set(mix) == {"air", "sea"} and sum(mix.values()) == pytest.approx(1.0)
    assert mix["sea"] > mix["air"] > 0


@pytest.mark.parametrize("preset", ["table1", "table1-det"])
def test_transit_times_abnormal_delays_aside_fall_in_table1_ranges(preset):
    scenario = load_scenario(preset)
    lanes = hub_lanes(scenario)
    assert set(lanes) == {(m, mode) for m in TABLE1 for mode in MODE_COLUMN}
    reals = [scenario.sample(seed) for seed in range(60)]
    normal = np.concatenate([r.transit_days - r.abnormal_delay for r in reals])  # [60*T, D]
    for (market, mode), d in lanes.items():
        lo, hi = TABLE1[market][MODE_COLUMN[mode]]
        days = normal[:, d]
        assert days.min() >= lo and days.max() <= hi, (market, mode, days.min(), days.max())
        if not scenario.deterministic:  # the whole range is used, not one corner of it
            assert set(np.unique(days)) == set(range(lo, hi + 1)), (market, mode)
    delayed = np.concatenate([r.abnormal_delay for r in reals])[:, list(lanes.values())]
    assert (delayed > 0).any() != scenario.deterministic


def expected_cost_per_order(scenario, market: str, mix: dict[str, float]) -> tuple[float, float]:
    """(expected Eq.1 cost, expected customs + last-mile fee) of one hub-shipped order of ``market``, USD."""
    lanes = hub_lanes(scenario)
    cost = fee = 0.0
    for mode, share in mix.items():
        lane = scenario.delivery_lanes[lanes[(market, mode)]]
        days, prob = transit_distribution(lane, scenario.deterministic)
        mean_days = float(np.dot(days, prob))
        cost += share * (
            lane.distance_km * lane.cost_per_km + mean_days * lane.cost_per_transit_day + lane.fee_per_order
        )
        fee += share * lane.fee_per_order
    return cost, fee


@pytest.mark.parametrize("market", list(TABLE1))
def test_expected_cost_per_order_is_within_10_percent_of_table1(market):
    scenario, mix = load_scenario("table1"), typical_mix()
    cost, fee = expected_cost_per_order(scenario, market, mix)
    assert cost == pytest.approx(TABLE1[market][0], rel=0.10)
    assert fee > 0.5 * cost  # customs clearance + last mile: over half of the cost of an order
    # air costs more per order than sea in every market (the mix matters)
    air, sea = (expected_cost_per_order(scenario, market, {mode: 1.0})[0] for mode in ("air", "sea"))
    assert air > sea


def test_the_environment_charges_the_calibrated_cost():
    """Route every hub lot by the typical mix (drawn per lot) and read the Eq.1 cost the env charges."""
    mix = typical_mix()
    env = gym.make("CrossBorderRouting-v0", scenario="table1")
    base = env.unwrapped
    scenario, net = base.scenario, base.net
    lanes = hub_lanes(scenario)
    choice_of = {}  # (region index, mode) -> action value
    for r, region in enumerate(scenario.regions):
        for mode in mix:
            choice_of[(r, mode)] = 1 + int(np.flatnonzero(net.region_lanes[r] == lanes[(region.name, mode)])[0])
    for r, region in enumerate(scenario.regions):
        cost = units = 0.0
        for seed in range(4):
            rng = np.random.default_rng(seed)
            env.reset(seed=seed)
            done = False
            while not done:
                modes = rng.choice(list(mix), size=net.n_lots, p=list(mix.values()))
                action = np.array([choice_of[(lr, m)] for lr, m in zip(net.lot_region, modes, strict=True)])
                action[net.lot_region != r] = 0  # only this market ships, so Eq.1 is its cost alone
                shipped = base.state.shipped
                _, _, done, _, info = env.step(action)
                cost += info["reward_terms"]["eq1_route_cost"]
                units += base.state.shipped - shipped
        assert units > 500
        assert cost / units == pytest.approx(TABLE1[region.name][0], rel=0.10), region.name
