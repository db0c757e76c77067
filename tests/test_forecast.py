"""The forecast a policy plans with matches what the env charges: the expected Eq.1 and Eq.4 of a unit shipped on
each lane (``Network.dl_expected_*``, used by greedy and the rolling MILP) against the env's realized mean over
many seeds, measured through ``env.step`` itself."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from envs.scenario import load_scenario

SEEDS = {"table1": range(2000, 2100), "promo": range(2000, 2060), "table1-det": range(1)}


def realized_unit_costs(preset: str, lane: int) -> tuple[np.ndarray, np.ndarray]:
    """Per day on which units shipped: (Eq.1, Eq.4) per unit, with every lot of the lane's region sent on it.

    All of a day's shipped units then travel on one lane with one realized transit time, so the day's
    terms divided by its units are that lane's realized per-unit costs. A day is skipped when nothing
    shipped (lane closed, or no stock); that depends on closures and stock only, never on the transit
    time, so the kept days are an unbiased sample of it.
    """
    env = gym.make("CrossBorderRouting-v0", scenario=preset)
    base = env.unwrapped
    net = base.net
    region = net.dl_region[lane]
    choice = 1 + int(np.flatnonzero(net.region_lanes[region] == lane)[0])
    action = np.where(net.lot_region == region, choice, 0).astype(np.int64)
    route, delay = [], []
    for seed in SEEDS[preset]:
        env.reset(seed=seed)
        done = False
        while not done:
            before = base.state.shipped
            _, _, done, _, info = env.step(action)
            units = base.state.shipped - before
            if units:
                route.append(info["reward_terms"]["eq1_route_cost"] / units)
                delay.append(info["reward_terms"]["eq4_delay_penalty"] / units)
    return np.array(route), np.array(delay)


@pytest.mark.parametrize("preset", ["table1", "promo"])
def test_expected_unit_costs_match_the_env_on_average(preset):
    net = load_scenario(preset).network
    for lane in range(net.D):
        route, delay = realized_unit_costs(preset, lane)
        assert len(route) > 500, (preset, lane, len(route))
        for name, sample, expected in (
            ("Eq.1", route, net.dl_expected_route_cost[lane]),
            ("Eq.4", delay, net.dl_expected_delay_penalty[lane]),
        ):
            se = sample.std(ddof=1) / np.sqrt(len(sample))
            assert abs(sample.mean() - expected) <= 4.5 * se + 1e-9, (preset, lane, name, sample.mean(), expected, se)
        assert net.dl_expected_unit_cost[lane] == pytest.approx(
            net.dl_expected_route_cost[lane] + net.dl_expected_delay_penalty[lane]
        )


def test_deterministic_forecast_is_the_realized_cost_exactly():
    net = load_scenario("table1-det").network
    for lane in range(net.D):
        route, delay = realized_unit_costs("table1-det", lane)
        assert len(route) > 0
        np.testing.assert_allclose(route, net.dl_expected_route_cost[lane], rtol=1e-12)
        np.testing.assert_allclose(delay, net.dl_expected_delay_penalty[lane], rtol=1e-12, atol=1e-12)
