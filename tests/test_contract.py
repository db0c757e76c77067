"""The exactness contract (DESIGN.md section 2): the hindsight MILP's plan replays to its objective,
term by term; on ``tiny`` it equals the best of every action sequence; no policy beats it.

These tests are never loosened: a failure is a bug in the model, the env or the MILP.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import envs
from baselines import HEURISTICS, RollingHorizonPolicy, replay_plan, run_episode, solve_hindsight
from envs import Scenario, load_scenario

ENV_IDS = list(envs.ENV_IDS)
REL = 1e-6


def assert_replay_equal(scenario, seed, env_id, result):
    total, terms = replay_plan(scenario, seed, env_id, result.plan)
    scale = max(1.0, abs(result.objective))
    assert total == pytest.approx(result.objective, rel=REL, abs=REL * scale)
    for name in envs.TERM_NAMES:
        assert terms[name] == pytest.approx(result.terms[name], rel=REL, abs=REL * scale), name


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("seed", range(6))
def test_replay_equality_tiny(env_id, seed):
    res = solve_hindsight("tiny", seed, env_id)
    assert res.status == "optimal"
    assert len(res.plan) == 3
    assert_replay_equal("tiny", seed, env_id, res)


# table1 and promo are hard MILPs (lot-sizing of transfers; see bench/RESULTS.md): a short time limit keeps
# the suite fast. Replay equality must hold for whatever plan the solver returns, optimal or not, and the
# bound it reports must hold against every policy.
PRESET_CASES = [
    ("table1", "CrossBorderDispatch-v0", 0),
    ("table1", "CrossBorderDispatch-v0", 1),
    ("table1", "CrossBorderRouting-v0", 1),
    ("table1", "CrossBorderTransfer-v0", 2),
    ("table1-det", "CrossBorderDispatch-v0", 0),
    ("promo", "CrossBorderDispatch-v0", 0),
    ("promo", "CrossBorderTransfer-v0", 4),
    ("scarce", "CrossBorderDispatch-v0", 0),
]


@functools.cache
def preset_solve(preset: str, env_id: str, seed: int):
    return solve_hindsight(preset, seed, env_id, mip_gap=1e-3, time_limit=4.0)


@pytest.mark.parametrize(("preset", "env_id", "seed"), PRESET_CASES)
def test_replay_equality_presets(preset, env_id, seed):
    res = preset_solve(preset, env_id, seed)
    assert res.status in ("optimal", "time_limit")
    assert res.bound >= res.objective and res.gap >= 0
    assert len(res.plan) == load_scenario(preset).horizon_days
    assert_replay_equal(preset, seed, env_id, res)


def test_routing_only_table1_proven_optimal():
    res = solve_hindsight("table1", 5, "CrossBorderRouting-v0")
    assert res.status == "optimal" and res.gap <= 1e-9
    assert_replay_equal("table1", 5, "CrossBorderRouting-v0", res)


def brute_force_best(scenario, env_id: str, seed: int) -> float:
    """Best return over EVERY action sequence (all of ``nvec``, not only masked-in choices: a mask judges
    each choice alone at the start of the day, so it can hide an action that works once the same day's
    lots have shipped, e.g. a transfer into a warehouse the lots free room in). Depth-first search through
    ``env.step`` from copies of the state, memoized on (day, on hand, inbound), all the future depends on."""
    env = gym.make(env_id, scenario=scenario).unwrapped
    env.reset(seed=seed)
    nvec = env.action_space.nvec
    actions = np.array(np.meshgrid(*[np.arange(n) for n in nvec], indexing="ij")).reshape(len(nvec), -1).T
    memo: dict[tuple, float] = {}

    def best_from(state) -> float:
        if state.day >= env.net.T:
            return 0.0
        key = (state.day, state.on_hand.tobytes(), state.inbound.tobytes())
        if key not in memo:
            best = -np.inf
            for action in actions:
                env.state = state.copy()
                _, reward, _, _, _ = env.step(action)
                best = max(best, reward + best_from(env.state))
            memo[key] = best
        return memo[key]

    return best_from(env.state.copy())


def tiny_plus() -> Scenario:
    """``tiny`` with a second hub that is a home warehouse, receives supply and has a small capacity,
    a second region, and a transfer lane with three levels and a random lead: lot collisions, the fixed
    routing rule skipping a big lot then shipping a small one, and the capacity rule with supply arrivals."""
    d = load_scenario("tiny").to_dict()
    d["name"] = "tiny-plus"
    d["warehouses"].append(
        {"name": "hub2", "kind": "hub", "capacity": 3, "initial_stock": {"gadget": 1}, "target_stock": {"gadget": 2}}
    )
    d["regions"].append({**d["regions"][0], "name": "market2", "home_warehouse": "hub2", "home_mode": "air"})
    lane = d["delivery_lanes"][0]
    d["delivery_lanes"] += [
        {**lane, "region": "market2"},
        {**lane, "warehouse": "hub2", "region": "market2", "fee_per_order": 0.2},
    ]
    d["transfer_lanes"].append(
        {**d["transfer_lanes"][0], "destination": "hub2", "quantity_levels": [0, 1, 3], "lead_time_days": [1, 2]}
    )
    d["supplier_shipments"].append(
        {"warehouse": "hub2", "sku": "gadget", "quantity": 2, "first_day": 1, "period_days": 7, "quantity_cv": 0.5}
    )
    return Scenario.from_dict(d)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("seed", range(5))
def test_brute_force_tiny(env_id, seed):
    res = solve_hindsight("tiny", seed, env_id)
    assert res.status == "optimal"
    assert brute_force_best("tiny", env_id, seed) == pytest.approx(res.objective, rel=REL, abs=REL)


# the full action space of CrossBorderDispatch-v0 is 486 actions a day here: two seeds keep it quick
@pytest.mark.parametrize(
    ("env_id", "seed"),
    [(e, s) for e in ENV_IDS for s in range(4) if e != "CrossBorderDispatch-v0" or s < 2],
)
def test_brute_force_tiny_plus(env_id, seed):
    scen = tiny_plus()
    res = solve_hindsight(scen, seed, env_id)
    assert res.status == "optimal"
    assert_replay_equal(scen, seed, env_id, res)
    assert brute_force_best(scen, env_id, seed) == pytest.approx(res.objective, rel=REL, abs=REL)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_no_policy_beats_the_optimum_tiny(env_id):
    scen = load_scenario("tiny")
    env = gym.make(env_id, scenario=scen)
    policies = [cls(scen) for cls in HEURISTICS.values()] + [RollingHorizonPolicy(scen, env_id, window=2)]
    for seed in range(12):
        best = solve_hindsight(scen, seed, env_id)
        for policy in policies:
            got = run_episode(env, policy, seed).episode_return
            assert got <= best.objective + REL * max(1.0, abs(best.objective)), (policy.name, seed)


@pytest.mark.parametrize(("preset", "env_id", "seed"), [c for c in PRESET_CASES if c[0] != "table1-det"])
def test_no_policy_beats_the_bound_presets(preset, env_id, seed):
    scen = load_scenario(preset)
    env = gym.make(env_id, scenario=scen)
    res = preset_solve(preset, env_id, seed)
    for cls in HEURISTICS.values():
        got = run_episode(env, cls(scen), seed).episode_return
        assert got <= res.bound, (cls.name, seed)


def test_rolling_milp_does_not_beat_the_bound_table1():
    scen = load_scenario("table1")
    res = preset_solve("table1", "CrossBorderDispatch-v0", 0)
    got = run_episode(gym.make("CrossBorderDispatch-v0", scenario=scen), RollingHorizonPolicy(scen), 0)
    assert got.episode_return <= res.bound


def test_rolling_full_window_equals_hindsight_on_deterministic():
    # table1-det cut to 8 days keeps the 8 rolling solves and the hindsight solve exact and quick
    data = load_scenario("table1-det").to_dict()
    scen = Scenario.from_dict({**data, "horizon_days": 8})
    best = solve_hindsight(scen, 0)
    assert best.status == "optimal"
    policy = RollingHorizonPolicy(scen, window=8, time_limit=None, mip_gap=0.0)
    got = run_episode(gym.make("CrossBorderDispatch-v0", scenario=scen), policy, 0)
    assert got.episode_return == pytest.approx(best.objective, rel=REL)


def test_time_limited_solve_reports_gap_and_a_replayable_plan():
    res = solve_hindsight("promo", 0, time_limit=1.0)
    assert res.status == "time_limit"
    assert res.gap > 0 and res.bound > res.objective
    assert_replay_equal("promo", 0, "CrossBorderDispatch-v0", res)
