"""The Gymnasium API of the three ids: checkers, determinism, pickling, errors, and the docstring's promises."""

from __future__ import annotations

import pickle
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.dispatch_env import CrossBorderDispatchEnv
from envs.reward import TERM_NAMES
from envs.scenario import PRESET_DIR, load_scenario

DOC = CrossBorderDispatchEnv.__doc__
KPI_NAMES = (
    "fill_rate",
    "on_time_rate",
    "abnormal_delay_rate",
    "avg_delivery_days",
    "transport_cost_per_unit",
    "units_transferred",
)

ENV_IDS = list(envs.ENV_IDS)
SMALL_PRESETS = ["tiny", "table1", "table1-det", "promo", "scarce"]  # every preset but `large`


@pytest.mark.parametrize("preset", SMALL_PRESETS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass_without_warnings(env_id, preset):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning of either checker is a failure
        gym_check_env(gym.make(env_id, scenario=preset).unwrapped)
        sb3_check_env(gym.make(env_id, scenario=preset).unwrapped, warn=True)


def test_ids_are_registered_with_their_decisions():
    for env_id, decisions in envs.ENV_IDS.items():
        env = gym.make(env_id, scenario="tiny")
        assert env.unwrapped.decisions == decisions
        net = env.unwrapped.net
        n_lots, n_transfers = net.n_lots, net.L * net.K
        expected = {"both": n_lots + n_transfers, "routing": n_lots, "transfers": n_transfers}[decisions]
        assert env.action_space.shape == (expected,)
        assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
        assert env.observation_space.dtype == np.float32


def test_make_accepts_preset_path_and_scenario(tmp_path):
    path = load_scenario("tiny").to_file(tmp_path / "copy.json")
    envs_ = [gym.make("CrossBorderDispatch-v0", scenario=s) for s in ("tiny", PRESET_DIR / "tiny.yaml", path)]
    envs_.append(gym.make("CrossBorderDispatch-v0", scenario=load_scenario("tiny")))
    first = [e.reset(seed=5)[0] for e in envs_]
    assert all(np.array_equal(first[0], o) for o in first[1:])


def test_bad_arguments_are_clear_errors():
    with pytest.raises(
        ValueError, match=r"decisions='all' is not allowed; allowed: \['both', 'routing', 'transfers'\]"
    ):
        CrossBorderDispatchEnv("tiny", decisions="all")
    with pytest.raises(ValueError, match=r"forecast_days=-1 must be an integer in 0..365"):
        CrossBorderDispatchEnv("tiny", forecast_days=-1)
    assert gym.make("CrossBorderDispatch-v0", scenario="tiny", render_mode=None).unwrapped.render_mode is None
    with pytest.raises(ValueError, match=r"render_mode='human' is not supported; allowed: None, 'ansi', 'rgb_array'"):
        CrossBorderDispatchEnv("tiny", render_mode="human")
    data = load_scenario("tiny").to_dict()
    data["transfer_lanes"] = []
    from envs.scenario import Scenario

    with pytest.raises(ValueError, match="leaves no action"):
        CrossBorderDispatchEnv(Scenario.from_dict(data), decisions="transfers")


def _rollout(env, seed: int, actions_seed: int, masked_action, steps: int | None = None):
    """Trajectory of (obs, reward, terminated, truncated, info) with seeded masked-random actions."""
    rng = np.random.default_rng(actions_seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    done, n = False, 0
    while not done and (steps is None or n < steps):
        step = env.step(masked_action(rng, env))
        out.append(step)
        done, n = step[2] or step[3], n + 1
    return out


def _same(a, b) -> bool:
    """Exact equality of nested trajectories (arrays, dicts, floats)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("preset", ["tiny", "promo"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_actions_same_trajectory(env_id, preset, masked_action):
    a = _rollout(gym.make(env_id, scenario=preset), 11, 0, masked_action)
    b = _rollout(gym.make(env_id, scenario=preset), 11, 0, masked_action)
    assert _same(a, b)
    # the same env object, reset again, replays too
    env = gym.make(env_id, scenario=preset)
    _rollout(env, 3, 1, masked_action)
    assert _same(_rollout(env, 11, 0, masked_action), a)
    c = _rollout(gym.make(env_id, scenario=preset), 12, 0, masked_action)
    assert not _same(a, c)
    assert not np.array_equal(np.stack([s[0] for s in a]), np.stack([s[0] for s in c]))
    # the realization does not depend on the actions played: other actions, same trace
    other = gym.make(env_id, scenario=preset)
    _rollout(other, 11, 99, masked_action)
    assert other.unwrapped.realization.equals(env.unwrapped.realization)
    assert other.unwrapped.realization.equals(other.unwrapped.scenario.sample(11))


def test_reset_without_seed_draws_from_the_env_generator():
    env = gym.make("CrossBorderDispatch-v0", scenario="table1")
    env.reset(seed=1)
    first = env.unwrapped.episode_seed
    env.reset()
    second = env.unwrapped.episode_seed
    assert first == 1 and second != first
    again = gym.make("CrossBorderDispatch-v0", scenario="table1")
    again.reset(seed=1)
    again.reset()
    assert again.unwrapped.episode_seed == second
    assert again.unwrapped.realization.equals(env.unwrapped.scenario.sample(second))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip_mid_episode_continues_identically(env_id, masked_action):
    env = gym.make(env_id, scenario="promo")
    _rollout(env, 7, 0, masked_action, steps=9)
    clone = pickle.loads(pickle.dumps(env))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    done = False
    while not done:
        a, b = env.step(masked_action(rng_a, env)), clone.step(masked_action(rng_b, clone))
        assert _same(a, b)
        done = a[2]
    assert clone.unwrapped.realization.equals(env.unwrapped.realization)


@pytest.mark.parametrize("preset", ["tiny", "table1-det"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_episode_ends_by_termination_after_horizon_with_kpis(env_id, preset, masked_action):
    env = gym.make(env_id, scenario=preset)
    steps = _rollout(env, 0, 0, masked_action)[1:]
    horizon = env.unwrapped.scenario.horizon_days
    assert len(steps) == horizon
    assert [s[2] for s in steps] == [False] * (horizon - 1) + [True]
    assert not any(s[3] for s in steps)  # never truncated
    assert all("episode_kpis" not in s[4] for s in steps[:-1])
    info = steps[-1][4]
    kpis = info["episode_kpis"]
    assert set(KPI_NAMES) <= set(kpis)
    real = env.unwrapped.realization
    assert kpis["units_demanded"] == real.demand.sum()
    assert kpis["fill_rate"] == pytest.approx(kpis["units_shipped"] / kpis["units_demanded"])
    eq1 = sum(s[4]["reward_terms"]["eq1_route_cost"] for s in steps)
    assert kpis["transport_cost_per_unit"] * max(kpis["units_shipped"], 1) == pytest.approx(eq1)
    assert 0 <= kpis["on_time_rate"] <= 1 and 0 <= kpis["abnormal_delay_rate"] <= 1
    if preset == "table1-det":
        assert kpis["abnormal_delay_rate"] == 0
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.unwrapped.step(env.action_space.sample())


def test_step_before_reset_is_an_error():
    env = CrossBorderDispatchEnv("tiny")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(env.action_space.shape, dtype=np.int64))


def test_every_step_reports_its_terms_and_mask():
    env = gym.make("CrossBorderDispatch-v0", scenario="tiny")
    _, info = env.reset(seed=0)
    assert np.array_equal(info["action_mask"], env.unwrapped.action_masks()) and info["day"] == 0
    obs, reward, _, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.int64))
    assert tuple(info["reward_terms"]) == TERM_NAMES
    assert info["day"] == 0
    assert np.array_equal(info["action_mask"], env.unwrapped.action_masks())
    assert info["action_mask"].dtype == bool and info["action_mask"].shape == (env.action_space.nvec.sum(),)


def test_returned_masks_are_copies():
    env = gym.make("CrossBorderDispatch-v0", scenario="tiny")
    _, info = env.reset(seed=0)
    info["action_mask"][:] = False
    m = env.unwrapped.action_masks()
    m[:] = False
    view = env.unwrapped.view()
    view.lot_mask[:] = False
    assert env.unwrapped.action_masks()[0]  # reject is always allowed
    assert env.unwrapped.view().lot_mask[:, 0].all()


# ------------------------------------------------------------ action errors
BAD_ACTIONS = [
    ("too short", lambda a: a[:-1], r"action has shape \(\d+,\); expected \(\d+,\)"),
    ("2-D", lambda a: a[None, :], r"action has shape \(1, \d+\); expected"),
    ("scalar", lambda a: a[0], r"action has shape \(\); expected"),
    (
        "negative",
        lambda a: np.where(np.arange(a.size) == 1, -1, a),
        r"action\[1\]=-1 is out of range; allowed: 0\.\.\d+",
    ),
    ("too large", lambda a: a + 50, r"action\[0\]=50 is out of range; allowed: 0\.\.3 \(\d+ bad entries\)"),
    ("fractional", lambda a: a + 0.5, r"action must hold integers \(whole numbers\), got dtype float64"),
    ("nan", lambda a: np.full(a.shape, np.nan), "action must hold integers"),
    ("inf", lambda a: np.full(a.shape, np.inf), "action must hold integers"),
    ("strings", lambda a: a.astype(str), "action must hold integers"),
    ("bools", lambda a: a.astype(bool), r"action must hold integers \(whole numbers\), got dtype bool"),
]


@pytest.mark.parametrize("make_bad, message", [c[1:] for c in BAD_ACTIONS], ids=[c[0] for c in BAD_ACTIONS])
def test_bad_action_raises_value_error(make_bad, message):
    env = gym.make("CrossBorderDispatch-v0", scenario="table1").unwrapped
    env.reset(seed=0)
    before = env.state.copy()
    with pytest.raises(ValueError, match=message):
        env.step(make_bad(np.zeros(env.action_space.shape, dtype=np.int64)))
    assert env.state.day == before.day and np.array_equal(env.state.on_hand, before.on_hand)  # nothing played


def test_whole_float_and_list_actions_equal_integer_actions(masked_action):
    a, b, c = (gym.make("CrossBorderDispatch-v0", scenario="table1") for _ in range(3))
    for e in (a, b, c):
        e.reset(seed=2)
    action = masked_action(np.random.default_rng(0), a)
    step_a = a.step(action)
    assert _same(step_a, b.step(action.astype(np.float32)))
    assert _same(step_a, c.step(action.tolist()))


# --------------------------------------------------- the docstring is the manual
def test_docstring_sections_are_present():
    for section in (
        "Description",
        "Action Space",
        "Observation Space",
        "Rewards",
        "Starting State",
        "Episode End",
        "Arguments",
        "Version History",
    ):
        assert f"## {section}" in DOC
    for name in (*TERM_NAMES, *KPI_NAMES, *envs.ENV_IDS):
        assert name in DOC


def _obs_table() -> list[list[str]]:
    section = DOC.split("## Observation Space")[1].split("## Rewards")[0]
    rows = [line.strip() for line in section.splitlines() if line.strip().startswith("| ``")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observation_table_matches_the_space(env_id):
    env = gym.make(env_id, scenario="table1").unwrapped
    net = env.net
    sizes = {
        "W": net.W, "K": net.K, "H": net.tl_max_lead, "R": net.R, "J": net.J, "D": net.D, "L": net.L,
        "F": env.forecast_days,
    }  # fmt: skip
    table = _obs_table()
    assert [row[0] for row in table] == list(env.obs_slices)
    space = env.observation_space
    assert env.obs_slices["forecast"].stop == space.shape[0]
    for block, shape, _meaning, low, high in table:
        sl = env.obs_slices[block]
        assert sl.stop - sl.start == int(eval(shape, {}, sizes)), block  # noqa: S307 - trusted docstring text
        assert np.all(space.low[sl] == float(low)), block
        bound = {"stock_high": env.stock_high, "lot_high": env.lot_high}.get(high) or float(high)
        assert np.all(space.high[sl] == np.float32(bound)), block
        assert np.isfinite(space.high[sl]).all()


def test_docstring_example_runs():
    code = re.search(r"```python\n(.*?)```", DOC, re.S).group(1)
    code = "\n".join(line[4:] if line.startswith("    ") else line for line in code.splitlines())
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the manual's own example
    assert set(namespace["info"]["reward_terms"]) == set(TERM_NAMES)


def test_realization_option_plays_the_given_trace():
    env = gym.make("CrossBorderDispatch-v0", scenario="table1")
    real = env.unwrapped.scenario.sample(42)
    obs, _ = env.reset(seed=0, options={"realization": real})
    assert env.unwrapped.realization is real and env.unwrapped.episode_seed == 42
    other = gym.make("CrossBorderDispatch-v0", scenario="table1")
    assert np.array_equal(obs, other.reset(seed=42)[0])
    with pytest.raises(ValueError, match="must be a Realization, got dict"):
        env.reset(options={"realization": {"demand": 1}})
    bad = real.copy()
    bad.transit_days = bad.transit_days[:, :3]
    with pytest.raises(ValueError, match=r"realization\.transit_days must be a integer array of shape \(30, 12\)"):
        env.reset(options={"realization": bad})


@pytest.mark.parametrize("deterministic", [False, True])
def test_scenario_without_transfer_lanes_or_suppliers_runs(deterministic, masked_action):
    from envs.scenario import Scenario

    data = load_scenario("tiny").to_dict() | {"transfer_lanes": [], "supplier_shipments": []}
    data["deterministic"] = deterministic
    scenario = Scenario.from_dict(data)
    for env_id in ("CrossBorderDispatch-v0", "CrossBorderRouting-v0"):
        env = gym.make(env_id, scenario=scenario)
        assert env.action_space.shape == (scenario.network.n_lots,)
        steps = _rollout(env, 0, 0, masked_action)
        assert steps[-1][2] and steps[-1][4]["episode_kpis"]["units_transferred"] == 0
        assert env.unwrapped.realization.supply.sum() == 0


def test_masks_reach_sb3_contrib_through_wrappers():
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = gym.make("CrossBorderDispatch-v0", scenario="tiny")
    _, info = env.reset(seed=0)
    assert np.array_equal(env.get_wrapper_attr("action_masks")(), info["action_mask"])
    vec = DummyVecEnv([lambda: gym.make("CrossBorderDispatch-v0", scenario="tiny")])
    vec.seed(0)
    vec.reset()
    masks = get_action_masks(vec)
    assert masks.shape == (1, env.action_space.nvec.sum()) and masks.dtype == bool
    assert np.array_equal(masks[0], vec.envs[0].unwrapped.action_masks())


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observation_blocks_hold_what_the_table_says(env_id, masked_action):
    from envs.forecast import expected_demand

    env = gym.make(env_id, scenario="promo")
    base = env.unwrapped
    net, F = base.net, base.forecast_days
    obs, _ = env.reset(seed=4)
    real = base.realization
    assert np.array_equal(base.state.on_hand, net.initial_stock + real.supply[0])  # the starting state
    lots = real.lots(net.J).reshape(net.T, -1)
    mean = expected_demand(base.scenario).reshape(net.T, -1)
    rng = np.random.default_rng(0)
    for t in range(net.T):
        block = {name: obs[sl] for name, sl in base.obs_slices.items()}
        state = base.state
        assert np.allclose(block["on_hand"] * base.stock_scale, state.on_hand.reshape(-1), rtol=1e-6)
        pipeline = np.moveaxis(state.inbound[t + 1 : t + 1 + net.tl_max_lead], 0, -1).reshape(-1)
        assert np.allclose(block["pipeline"] * base.stock_scale, pipeline, rtol=1e-6)
        assert np.allclose(block["lots"] * base.demand_scale, lots[t], rtol=1e-6)
        assert np.array_equal(block["delivery_open"], real.delivery_open[t].astype(np.float32))
        assert np.array_equal(block["transfer_open"], real.transfer_open[t].astype(np.float32))
        assert block["day"][0] == np.float32(t / net.T)
        assert np.array_equal(block["weekday"], np.eye(7, dtype=np.float32)[t % 7])
        expected = np.zeros((F, mean.shape[1]))
        ahead = mean[t + 1 : t + 1 + F]
        expected[: len(ahead)] = ahead
        assert np.allclose(block["forecast"] * base.demand_scale, expected.reshape(-1), rtol=1e-6)
        obs, *_ = env.step(masked_action(rng, env))


@pytest.mark.parametrize("preset", [*SMALL_PRESETS, "large"])
def test_both_render_modes_draw_the_day_and_follow_the_state(preset):
    from baselines import make_policy

    text_env = gym.make("CrossBorderDispatch-v0", scenario=preset, render_mode="ansi")
    picture_env = gym.make("CrossBorderDispatch-v0", scenario=preset, render_mode="rgb_array")
    policy = make_policy("greedy", preset)
    frames = []
    for env in (text_env, picture_env):
        env.reset(seed=3)
        policy.reset(3)
        first = env.render()
        action = policy.act(None, env.unwrapped.view())
        env.step(action)
        frames.append((first, env.render(), action))
    (text0, text1, action), (image0, image1, _) = frames
    scen = load_scenario(preset)
    # the text names every warehouse with its on-hand / target, the day, and the last day's reward terms
    assert f"day 0 of {scen.horizon_days}" in text0 and f"day 1 of {scen.horizon_days}" in text1
    on_hand = text_env.unwrapped.state.on_hand
    target = text_env.unwrapped.net.target_stock
    for w, wh in enumerate(scen.warehouses):
        row = next(line for line in text1.splitlines() if line.startswith(wh.name[:14]))
        assert f"{on_hand[w, 0]}/{target[w, 0]}" in row
    assert "last day (USD)" not in text0 and all(name in text1 for name in envs.TERM_NAMES)
    # the picture: its promised shape, and it changes with the state and the action
    assert image0.shape == image1.shape == (320, 768, 3) and image0.dtype == np.uint8
    assert not np.array_equal(image0, image1)
    routed, sent = picture_env.unwrapped.last_routed
    lots, transfers = picture_env.unwrapped.layout.split(action)
    assert routed.sum() == text_env.unwrapped.trace.lots[0][lots > 0].sum()
    assert CrossBorderDispatchEnv(preset).render() is None  # no render mode: nothing drawn
