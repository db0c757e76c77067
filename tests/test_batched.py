"""The batched env (envs/batched.py) is the single env, member by member, and SB3 trains on it unchanged."""

from __future__ import annotations

import gymnasium as gym
import numba
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import envs
from agents.config import PPOConfig
from agents.factory import build_model, make_normalized_vec_env, make_vec_env
from agents.vec_env import BatchedVecEnv
from envs import kernels
from envs.batched import BatchedDispatchEnv

ENV_IDS = list(envs.ENV_IDS)


def masked_actions(rng: np.random.Generator, nvec: np.ndarray, masks: np.ndarray, unmasked: bool) -> np.ndarray:
    """One action per row of ``masks`` (uniform among allowed choices, or among all with ``unmasked``)."""
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    cols = np.arange(nvec.max())[None, :]
    valid = cols < nvec[:, None]
    by_mask = masks[:, np.where(valid, starts[:, None] + cols, 0)]
    allowed = valid[None] & (np.ones_like(by_mask) if unmasked else by_mask)
    return np.where(allowed, rng.random(allowed.shape), -1.0).argmax(axis=2).astype(np.int64)


def assert_same_step(step: int, batched: tuple, reference: tuple) -> None:
    for name, x, y in zip(("obs", "reward", "terminated", "truncated"), batched[:4], reference[:4], strict=True):
        assert np.array_equal(x, y), (step, name)
    ib, ir = batched[4], reference[4]
    assert np.array_equal(ib["action_mask"], ir["action_mask"]), (step, "action_mask")
    assert np.array_equal(ib["day"], ir["day"]), (step, "day")
    for key in ("reward_terms", "episode_kpis"):
        assert np.array_equal(ib.get(f"_{key}", False), ir.get(f"_{key}", False)), (step, key)
        if key in ir:
            present = ir[f"_{key}"]
            for name, values in ir[key].items():
                if not name.startswith("_"):
                    assert np.array_equal(ib[key][name][present], values[present]), (step, key, name)


CASES = [(e, p, 1500) for e in ENV_IDS for p in ("tiny", "table1", "table1-det", "promo")]
CASES += [(e, "large", 130) for e in ENV_IDS]


@pytest.mark.parametrize(("env_id", "preset", "steps"), CASES)
def test_each_member_is_the_single_env(env_id, preset, steps):
    """Against SyncVectorEnv over single envs (Gymnasium's own reference), with the same seeds and actions,
    over episodes with autoresets: every observation, reward, reward term, mask and KPI is equal."""
    B = 3
    batched = gym.make_vec(env_id, num_envs=B, scenario=preset)
    reference = gym.make_vec(env_id, num_envs=B, vectorization_mode="sync", scenario=preset)
    assert isinstance(batched, BatchedDispatchEnv)
    seeds = [7, 123, 40_000]
    first_b, first_r = batched.reset(seed=seeds), reference.reset(seed=seeds)
    assert np.array_equal(first_b[0], first_r[0]) and np.array_equal(
        first_b[1]["action_mask"], first_r[1]["action_mask"]
    )
    rng = np.random.default_rng(0)
    nvec = batched.single_action_space.nvec
    masks = first_r[1]["action_mask"]
    ended = 0
    for step in range(steps):
        actions = masked_actions(rng, nvec, masks, unmasked=step % 4 == 3)
        out_b, out_r = batched.step(actions), reference.step(actions)
        assert_same_step(step, out_b, out_r)
        masks = out_r[4]["action_mask"]
        ended += int(out_r[2].sum())
    assert ended >= B  # every member ended an episode and was reset automatically
    assert np.array_equal(batched.unwrapped.episode_seeds, [e.unwrapped.episode_seed for e in reference.envs])


def test_same_step_autoreset_returns_the_final_observation():
    env = BatchedDispatchEnv(2, "tiny", autoreset_mode=AutoresetMode.SAME_STEP)
    single = gym.make("CrossBorderDispatch-v0", scenario="tiny")
    env.reset(seed=[5, 6])
    obs_single, _ = single.reset(seed=5)
    zero = np.zeros((2, env.single_action_space.shape[0]), dtype=np.int64)
    for _ in range(3):
        obs, rewards, terminated, _, infos = env.step(zero)
        obs_single, reward, done, _, _ = single.step(zero[0])
        assert rewards[0] == reward
    assert terminated.all() and infos["_final_obs"].all()
    assert np.array_equal(infos["final_obs"][0], obs_single)  # the last observation of the episode
    assert obs[0].tolist() != obs_single.tolist() and env.days.tolist() == [0, 0]  # already the next episode


def test_gymnasium_and_bad_inputs():
    env = gym.make_vec("CrossBorderRouting-v0", num_envs=4, scenario="tiny")
    obs, infos = env.reset(seed=0)
    assert env.observation_space.contains(obs) and infos["action_mask"].shape == (4, env.single_action_space.nvec.sum())
    with pytest.raises(ValueError, match=r"actions of a batch of 4 has shape \(3, 2\); expected \(4, 2\)"):
        env.step(np.zeros((3, env.single_action_space.shape[0]), dtype=np.int64))
    bad = np.zeros((4, env.single_action_space.shape[0]), dtype=np.int64)
    bad[2, 1] = 99
    with pytest.raises(ValueError, match=r"actions\[2, 1\]=99 is out of range; allowed: 0\.\."):
        env.step(bad)
    with pytest.raises(ValueError, match="num_envs=0 must be an integer >= 1"):
        BatchedDispatchEnv(0, "tiny")
    with pytest.raises(ValueError, match="seed must be None, an integer >= 0 or 4 such integers"):
        env.reset(seed=[1, 2])
    with pytest.raises(ValueError, match=r"reset_mask'\] must be a bool array of shape \(4,\)"):
        env.reset(options={"reset_mask": np.ones(3, dtype=bool)})


def tiny_config(**overrides) -> PPOConfig:
    fields = dict(scenario="tiny", n_envs=4, n_steps=12, batch_size=16, n_epochs=2, total_timesteps=96, seed=3,
                  eval_freq=0, hindsight=False, net_arch=[16])  # fmt: skip
    return PPOConfig(**{**fields, **overrides}).validate()


def test_sb3_trains_on_the_batched_env_exactly_as_on_the_dummy_vec_env():
    """The same seeded run on BatchedVecEnv and on the old DummyVecEnv stack: the same episodes (training
    seeds), the same observations and rewards, hence bit-identical parameters."""
    params, logged = {}, {}
    for vec_env in ("batched", "dummy"):
        torch.manual_seed(0)
        config = tiny_config(vec_env=vec_env)
        venv = make_normalized_vec_env(config)
        model = build_model(config, venv)
        model.learn(96)
        params[vec_env] = [p.detach().clone() for p in model.policy.parameters()]
        logged[vec_env] = list(model.ep_info_buffer)
    assert all(torch.equal(a, b) for a, b in zip(params["batched"], params["dummy"], strict=True))
    assert [e["r"] for e in logged["batched"]] == [e["r"] for e in logged["dummy"]]


def test_batched_vec_env_infos_and_seeds():
    config = tiny_config()
    venv = make_vec_env(config)
    assert isinstance(venv, BatchedVecEnv)
    venv.seed(11)
    venv.reset()
    first = [info["episode_seed"] for info in venv.reset_infos]
    assert all(envs_seed >= 10**6 for envs_seed in first)  # training seeds only
    rng = [np.random.default_rng(11 + rank) for rank in range(config.n_envs)]
    assert first == [int(r.integers(10**6, 2 * 10**6)) for r in rng]
    masks = np.stack(venv.env_method("action_masks"))
    assert masks.shape == (config.n_envs, venv.action_space.nvec.sum())
    for _ in range(3):
        obs, rewards, dones, infos = venv.step(np.zeros((config.n_envs, venv.action_space.shape[0]), dtype=np.int64))
    assert dones.all()
    for info in infos:
        terms = info["episode_terms"]
        assert info["episode"]["l"] == 3
        assert info["episode"]["r"] == pytest.approx(terms["eq2_allocation_revenue"] - sum(
            v for k, v in terms.items() if k != "eq2_allocation_revenue"), abs=1e-6)  # fmt: skip
        assert info["terminal_observation"].shape == venv.observation_space.shape
        assert set(info["episode_kpis"]) == set(envs.dynamics.KPI_NAMES)
    assert sum(venv.get_attr("env_seconds")) > 0


@pytest.mark.parametrize(("preset", "B"), [("table1", 37), ("table1-det", 5), ("promo", 16)])
def test_threads_do_not_change_the_batch(preset, B):
    """The members cut into 1, 2 or 3 runs (serial, or numba's parallel threads; the realization drawn inside the
    kernel) give the same observations, rewards, masks and realizations, step for step with autoresets."""
    runs = []
    for threads in (1, 2, 3):
        env = BatchedDispatchEnv(B, preset, autoreset_mode=AutoresetMode.SAME_STEP, threads=threads)
        out = [env.reset(seed=100)]
        rng = np.random.default_rng(1)
        for _ in range(70):
            actions = masked_actions(rng, env.single_action_space.nvec, out[-1][-1]["action_mask"], False)
            out.append(env.step(actions))
        runs.append((out, [r.demand.copy() for r in env.realizations]))
    (one, real_one), *others = runs
    for other, real_other in others:
        for a, b in zip(one, other, strict=True):
            assert all(np.array_equal(x, y) for x, y in zip(a[:-1], b[:-1], strict=True))
            assert np.array_equal(a[-1]["action_mask"], b[-1]["action_mask"])
        assert all(np.array_equal(x, y) for x, y in zip(real_one, real_other, strict=True))
    with pytest.raises(ValueError, match="threads=0 must be an integer >= 1"):
        BatchedDispatchEnv(2, "tiny", threads=0)


def test_threads_run_in_numba_threads():
    """``threads > 1`` really steps members in numba's threads. The serial and parallel steps are two functions with
    their own on-disk cache entries: numba keys its cache by a function's source and signature, not its flags, so
    two compilations of one function loaded each other's code and ``threads=2`` ran serially (a silent 1.6x)."""
    serial, parallel = kernels.advance_batch_serial, kernels.advance_batch
    assert serial.py_func is not parallel.py_func
    assert serial._cache._cache_file._index_path != parallel._cache._cache_file._index_path
    assert parallel.targetoptions.get("parallel") and not serial.targetoptions.get("parallel")
    BatchedDispatchEnv(4, "tiny", threads=1).reset(seed=0)  # the serial one first, as an env's default runs it
    BatchedDispatchEnv(4, "tiny", threads=2).reset(seed=0)
    assert numba.threading_layer() in ("tbb", "omp", "workqueue")  # raises ValueError if no thread pool ever ran


def test_member_realizations_are_scenario_samples():
    env = BatchedDispatchEnv(3, "table1")
    env.reset(seed=[5, 2**40, 2**63 - 2])
    for b, seed in enumerate([5, 2**40, 2**63 - 2]):
        assert env.realization(b).equals(env.scenario.sample(seed))
