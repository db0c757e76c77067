"""Properties of the day transition, checked on seeded rollouts over presets and ids.

* every step agrees with a slow reference implementation written from the docstring;
* stock is conserved; the reward is exactly its signed terms; costs are >= 0;
* the observation stays inside its space;
* masks are exact: a choice taken alone (every other slot at 0) executes iff the mask allows it,
  and a masked-out choice behaves like the null choice (the lot is lost, the transfer not sent);
* no future realization reaches today's observation, mask or view.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs
from envs.forecast import demand_cap, expected_demand, expected_supply
from envs.reward import TERM_NAMES
from envs.scenario import Scenario, load_scenario

ENV_IDS = list(envs.ENV_IDS)


def tiny_home_hub() -> Scenario:
    """tiny with its fixed routing rule shipping from the hub, the origin of the transfer lane: in
    CrossBorderTransfer-v0 the rule-driven lots then compete with the transfers for hub stock."""
    data = load_scenario("tiny").to_dict()
    data["name"] = "tiny-home-hub"
    data["regions"][0] |= {"home_warehouse": "hub", "home_mode": "air"}
    data["regions"][0]["demand"]["gadget"]["base_rate"] = 2.0
    return Scenario.from_dict(data)


SCENARIOS = {name: load_scenario(name) for name in ("tiny", "table1", "table1-det", "promo", "scarce")}
SCENARIOS["tiny-home-hub"] = tiny_home_hub()


# ------------------------------------------------------------ reference day
def reference_day(s: Scenario, real, on_hand: np.ndarray, inbound: np.ndarray, t: int, action_lots, action_tr):
    """One day by the docstring, with plain loops over the scenario's own objects (not the Network arrays).

    Returns ``(terms, on_hand_end_of_day, inbound)``; ``on_hand`` is before the next day's arrivals.
    """
    K, J = len(s.skus), s.lots_per_batch
    wh = {w.name: i for i, w in enumerate(s.warehouses)}
    oh = on_hand.astype(int).tolist()
    inbound = inbound.copy()
    eq1 = eq2 = eq4 = lost = 0.0
    for r, region in enumerate(s.regions):
        lanes = [d for d, ln in enumerate(s.delivery_lanes) if ln.region == region.name]
        for k, sku in enumerate(s.skus):
            demand = int(real.demand[t, r, k])
            for j in range(J):
                n = demand // J + (1 if j < demand % J else 0)
                choice = int(action_lots[(r * K + k) * J + j])
                if n == 0:
                    continue
                d = lanes[choice - 1] if choice > 0 else None
                w = wh[s.delivery_lanes[d].warehouse] if d is not None else None
                if d is None or not real.delivery_open[t, d] or oh[w][k] < n:
                    lost += n * sku.lost_sale_penalty
                    continue
                ln, tau = s.delivery_lanes[d], int(real.transit_days[t, d])
                oh[w][k] -= n
                eq1 += n * (ln.distance_km * ln.cost_per_km + tau * ln.cost_per_transit_day + ln.fee_per_order)
                eq2 += n * sku.unit_profit
                eq4 += n * s.delay_penalty_alpha * max(tau - region.sla_days, 0) ** 2
    position = [sum(oh[w]) + int(inbound[t + 1 :, w].sum()) for w in range(len(s.warehouses))]
    for l, tl in enumerate(s.transfer_lanes):
        o, d = wh[tl.origin], wh[tl.destination]
        for k in range(K):
            q = tl.quantity_levels[int(action_tr[l * K + k])]
            if q == 0 or not real.transfer_open[t, l] or oh[o][k] < q:
                continue
            if position[d] + q > s.warehouses[d].capacity:
                continue
            oh[o][k] -= q
            position[d] += q
            inbound[t + int(real.transfer_lead[t, l]), d, k] += q
            eq2 += q * (tl.profit_per_unit - tl.cost_per_unit) - tl.fixed_cost
    eq5 = 0.0
    for w, warehouse in enumerate(s.warehouses):
        for k, sku in enumerate(s.skus):
            target = warehouse.target_stock.get(sku.name, 0)
            if target > 0:
                eq5 += s.imbalance_lambda * ((target - oh[w][k]) / target) ** 2
    terms = dict(zip(TERM_NAMES, (eq1, eq2, eq4, eq5, lost), strict=True))
    return terms, np.array(oh), inbound


def home_choices(s: Scenario) -> np.ndarray:
    """Lot-slot choices of the fixed routing rule (CrossBorderTransfer-v0), from the scenario's words."""
    out = []
    for region in s.regions:
        lanes = [ln for ln in s.delivery_lanes if ln.region == region.name]
        pos = next(
            i for i, ln in enumerate(lanes) if (ln.warehouse, ln.mode) == (region.home_warehouse, region.home_mode)
        )
        out += [1 + pos] * (len(s.skus) * s.lots_per_batch)
    return np.array(out)


def stress_action(rng: np.random.Generator, env) -> np.ndarray:
    """Everything on one lane choice and the top transfer level, clipped to range: provokes collisions."""
    nvec = env.unwrapped.action_space.nvec
    return np.minimum(rng.integers(1, 4), nvec - 1)


def _split(env, action: np.ndarray):
    base = env.unwrapped
    layout = base.layout
    lots = action[: layout.n_lot_slots] if layout.routes else home_choices(base.scenario)
    tr = action[layout.n_lot_slots :] if layout.transfers else np.zeros(base.net.L * base.net.K, dtype=int)
    return lots, tr


@pytest.mark.parametrize("preset", [*SCENARIOS, "large"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rollouts_match_reference_and_keep_invariants(env_id, preset, masked_action):
    scenario = SCENARIOS.get(preset) or load_scenario(preset)
    env = gym.make(env_id, scenario=scenario)
    base = env.unwrapped
    seeds = (0,) if preset == "large" else (0, 1, 2, 3, 4)
    initial = int(base.net.initial_stock.sum())
    for seed in seeds:
        rng = np.random.default_rng(seed)
        obs, info = env.reset(seed=seed)
        real, done = base.realization, False
        while not done:
            assert base.observation_space.contains(obs)
            state, t = base.state, base.state.day
            assert initial + state.supplied == int(state.on_hand.sum()) + state.in_transit() + state.shipped
            mode = rng.integers(3)  # masked random, unmasked random, or everything on one choice
            if mode == 0:
                action = masked_action(rng, env)
            elif mode == 1:
                action = masked_action(rng, env, np.ones_like(info["action_mask"]))
            else:
                action = stress_action(rng, env)
            before_oh, before_in = state.on_hand.copy(), state.inbound.copy()
            obs, reward, done, truncated, info = env.step(action)
            terms = info["reward_terms"]
            expected, oh_end, inbound = reference_day(scenario, real, before_oh, before_in, t, *_split(env, action))
            assert terms == pytest.approx(expected, rel=1e-9, abs=1e-9)
            assert reward == (
                terms["eq2_allocation_revenue"]
                - terms["eq1_route_cost"]
                - terms["eq4_delay_penalty"]
                - terms["eq5_imbalance"]
                - terms["lost_sales"]
            )
            assert all(terms[n] >= 0 for n in TERM_NAMES if n != "eq2_allocation_revenue")
            assert np.array_equal(base.state.inbound, inbound)
            arrivals = (inbound[t + 1] + real.supply[t + 1]) if t + 1 < base.net.T else 0
            assert np.array_equal(base.state.on_hand, oh_end + arrivals)
            assert not truncated
        state = base.state
        assert base.observation_space.contains(obs)
        assert initial + state.supplied == int(state.on_hand.sum()) + state.in_transit() + state.shipped
        assert state.supplied == real.supply.sum()


# --------------------------------------------------------------- mask exactness
def _play_alone(base, action: np.ndarray):
    """Step a shallow clone of the env (own state) with ``action``; the env itself is untouched."""
    clone = copy.copy(base)
    clone.state = base.state.copy()
    _, reward, _, _, info = clone.step(action)
    return clone.state, info["reward_terms"]


def _same_outcome(a, b) -> bool:
    (sa, ta), (sb, tb) = a, b
    return ta == tb and np.array_equal(sa.on_hand, sb.on_hand) and np.array_equal(sa.inbound, sb.inbound)


@pytest.mark.parametrize("preset", ["tiny", "tiny-home-hub", "table1", "promo"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_masks_are_exact_for_each_choice_alone(env_id, preset, masked_action):
    env = gym.make(env_id, scenario=SCENARIOS[preset])
    base = env.unwrapped
    net = base.net
    nvec = base.action_space.nvec
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    rng = np.random.default_rng(7)
    checked = {"allowed": 0, "refused": 0}
    for seed in (3, 4) if preset.startswith("tiny") else (3,):
        env.reset(seed=seed)
        done = False
        while not done:
            mask = base.action_masks()
            null = np.zeros(len(nvec), dtype=np.int64)
            null_state, null_terms = _play_alone(base, null)
            lots_today = base.trace.lots[base.state.day]
            for slot in range(len(nvec)):
                for choice in range(1, nvec[slot]):
                    action = null.copy()
                    action[slot] = choice
                    state, terms = _play_alone(base, action)
                    if slot < base.layout.n_lot_slots:  # a lot: did it ship, out of its lane's warehouse?
                        size = int(lots_today[slot])
                        w = net.dl_warehouse[net.lot_lane_table[slot, choice]]
                        k = net.lot_sku[slot]
                        executed = state.shipped - null_state.shipped == size > 0
                        assert executed == (null_state.on_hand[w, k] - state.on_hand[w, k] == size > 0)
                    else:  # a transfer: did it leave the origin and enter the pipeline?
                        tslot = slot - base.layout.n_lot_slots
                        q = int(net.transfer_qty_table[tslot, choice])
                        o, k = net.tl_origin[tslot // net.K], tslot % net.K
                        sent = int(state.inbound.sum() - null_state.inbound.sum())
                        executed = sent == q > 0
                        assert executed == (null_state.on_hand[o, k] - state.on_hand[o, k] == q)
                    assert executed == mask[starts[slot] + choice], (slot, choice)
                    if not executed:  # documented: lot lost / transfer not sent, like the null choice
                        assert _same_outcome((state, terms), (null_state, null_terms))
                    checked["allowed" if executed else "refused"] += 1
            _, _, done, _, _ = env.step(masked_action(rng, env))
    assert checked["allowed"] > 0 and checked["refused"] > 0  # both sides of the mask were exercised


def test_colliding_choices_fail_in_slot_order():
    """Two lots fine alone on the same stock: the later one is lost; a transfer then finds too little."""
    env = gym.make("CrossBorderDispatch-v0", scenario="tiny").unwrapped
    real = env.scenario.sample(0)
    real.demand[0, 0, 0] = 4  # two lots of 2; the hub holds 3
    real.delivery_open[:] = True
    real.transfer_open[:] = True
    env.reset(options={"realization": real})
    assert env.state.on_hand[0, 0] == 3
    assert env.action_masks().tolist() == [True, True, True, True, True, True, True, True]
    _, reward, _, _, info = env.step(np.array([1, 1, 1]))  # both lots by hub air, send 2 hub -> wh
    terms = info["reward_terms"]
    assert terms["lost_sales"] == 2 * 3.0  # the second lot
    assert terms["eq2_allocation_revenue"] == 2 * 10.0  # one lot sold, no transfer (hub has 1 left)
    assert env.state.kpi["units_transferred"] == 0 and env.state.shipped == 2


# --------------------------------------------------------------- information
def _future_changed(scenario: Scenario, real, t: int, seed: int):
    """A copy of ``real`` with everything a dispatcher cannot know on day ``t`` redrawn (still a valid trace)."""
    rng = np.random.default_rng(seed)
    out = real.copy()
    T = scenario.horizon_days
    cap = demand_cap(expected_demand(scenario))
    out.demand[t + 1 :] = rng.integers(0, cap[t + 1 :] + 1)
    if t + 1 < T:  # make sure tomorrow's orders really differ
        out.demand[t + 1] = np.where(real.demand[t + 1] < cap[t + 1], real.demand[t + 1] + 1, real.demand[t + 1] - 1)
    out.transit_days[t:] = rng.integers(1, 40, size=out.transit_days[t:].shape)
    out.abnormal_delay[t:] = rng.integers(0, 6, size=out.abnormal_delay[t:].shape)
    out.delivery_open[t + 1 :] = rng.random(out.delivery_open[t + 1 :].shape) < 0.5
    out.transfer_open[t + 1 :] = rng.random(out.transfer_open[t + 1 :].shape) < 0.5
    out.transfer_lead[t:] = rng.integers(1, scenario.network.tl_max_lead + 1, size=out.transfer_lead[t:].shape)
    out.supply[t + 1 :] = rng.integers(0, expected_supply(scenario)[t + 1 :] + 1)
    out.check(scenario)
    return out


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    preset=st.sampled_from(["tiny", "table1", "promo", "tiny-home-hub"]),
    env_id=st.sampled_from(ENV_IDS),
    seed=st.integers(0, 10_000),
    day_fraction=st.floats(0, 1, exclude_max=True),
)
def test_no_future_realization_leaks_into_today(preset, env_id, seed, day_fraction, masked_action):
    scenario = SCENARIOS[preset]
    t = int(day_fraction * scenario.horizon_days)
    real = scenario.sample(seed)
    future = _future_changed(scenario, real, t, seed + 1)
    a, b = gym.make(env_id, scenario=scenario), gym.make(env_id, scenario=scenario)
    obs_a, info_a = a.reset(options={"realization": real})
    obs_b, info_b = b.reset(options={"realization": future})
    rng = np.random.default_rng(seed)
    for _day in range(t + 1):
        assert np.array_equal(obs_a, obs_b)
        assert np.array_equal(info_a["action_mask"], info_b["action_mask"])
        va, vb = a.unwrapped.view(), b.unwrapped.view()
        for field in ("on_hand", "pipeline", "lots", "delivery_open", "transfer_open", "lot_mask", "transfer_mask"):
            assert np.array_equal(getattr(va, field), getattr(vb, field)), field
        action = masked_action(rng, a)
        obs_a, _, _, _, info_a = a.step(action)
        obs_b, _, _, _, info_b = b.step(action)
    if t + 1 < scenario.horizon_days:  # the changed future does show up once it is today
        assert not np.array_equal(obs_a, obs_b)


def test_kpi_names_list_the_episode_kpis_in_order():
    from envs.dynamics import KPI_NAMES

    env = gym.make("CrossBorderDispatch-v0", scenario="tiny")
    env.reset(seed=0)
    done, info = False, {}
    while not done:
        _, _, done, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.int64))
    assert tuple(info["episode_kpis"]) == KPI_NAMES
