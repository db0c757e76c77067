"""Agents: config validation, the training VecEnv, masking, save/load round trip, seeded determinism."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from agents import (
    EVAL_SEED_START,
    TRAIN_SEED_HIGH,
    TRAIN_SEED_LOW,
    VALIDATION_SEEDS,
    AgentMismatchError,
    ConfigError,
    PPOAgent,
    PPOConfig,
    load_agent,
)
from agents.checkpoint import CheckpointError
from agents.factory import TrainingSeeds, build_model, make_env, make_normalized_vec_env
from agents.policy import AgentMeta, save_agent
from evaluation.episode import Policy, run_episode
from evaluation.metrics import ratio_to_optimum

torch.set_num_threads(1)  # small MLPs: extra threads only contend with the other test worker

TINY = {"scenario": "tiny", "n_envs": 2, "n_steps": 24, "batch_size": 16, "total_timesteps": 96, "eval_freq": 0}


def tiny_config(**kw) -> PPOConfig:
    return PPOConfig(**{**TINY, **kw}).validate()


def train_in_process(config: PPOConfig, steps: int):
    venv = make_normalized_vec_env(config)
    model = build_model(config, venv)
    model.learn(total_timesteps=steps)
    return model, venv


def split_mask(mask: np.ndarray, nvec: np.ndarray) -> list[np.ndarray]:
    return np.split(mask, np.cumsum(nvec)[:-1])


# ----------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"batch_size": 7}, ["batch_size=7", "n_steps*n_envs=24*2=48", "batch_size=6"]),
        ({"batch_size": 96}, ["batch_size=96", "divide the rollout size"]),
        ({"n_steps": 2}, ["n_steps=2", "horizon_days=3", "n_steps >= 3"]),
        ({"total_timesteps": 10}, ["total_timesteps=10", "one rollout", "--timesteps >= 48"]),
        ({"algo": "dqn"}, ["algo='dqn'", "maskable-ppo", "ppo"]),
        ({"env_id": "CartPole-v1"}, ["env_id='CartPole-v1'", "CrossBorderDispatch-v0"]),
        ({"scenario": "nowhere"}, ["scenario", "presets"]),
        ({"gamma": 1.5}, ["gamma=1.5", "(0, 1]"]),
        ({"net_arch": []}, ["net_arch", "[128, 128]"]),
        ({"n_envs": 0}, ["n_envs=0", ">= 1"]),
        ({"vec_env": "ray"}, ["vec_env='ray'", "subproc"]),
        ({"pretrain_teacher_window": 0}, ["pretrain_teacher_window=0", "integer >= 1"]),
        ({"pretrain_teacher_window": 7.5}, ["pretrain_teacher_window=7.5", "integer >= 1"]),
        ({"pretrain_teacher_time_limit": 0.0}, ["pretrain_teacher_time_limit=0.0", "> 0", "None"]),
        ({"pretrain_teacher_mip_gap": 1.5}, ["pretrain_teacher_mip_gap=1.5", "[0, 1)"]),
        ({"pretrain_dagger_rounds": -1}, ["pretrain_dagger_rounds=-1", "integer >= 0"]),
        ({"pretrain_dagger_rounds": 2}, ["pretrain_dagger_rounds=2", "needs a pretrain_teacher"]),
        (
            {"pretrain_teacher": "rolling-milp", "pretrain_dagger_rounds": 1, "pretrain_dagger_episodes": 0},
            ["pretrain_dagger_episodes=0", ">= 1"],
        ),
    ],
)
def test_invalid_config_fails_up_front_naming_field_and_fix(fields, words):
    with pytest.raises(ConfigError) as err:
        PPOConfig(**{**TINY, **fields}).validate()
    for word in words:
        assert word in str(err.value)


def test_n_steps_is_checked_against_the_scenario_horizon():
    PPOConfig(scenario="table1", n_steps=30, n_envs=2, batch_size=60, total_timesteps=60).validate()
    with pytest.raises(ConfigError, match="horizon_days=30"):
        PPOConfig(scenario="table1", n_steps=29, n_envs=2, batch_size=58, total_timesteps=58).validate()


def test_unknown_config_field_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("n_step: 64\n")
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['n_step'\].*n_steps"):
        PPOConfig.from_file(path)


def test_config_yaml_round_trip(tmp_path):
    config = tiny_config(net_arch=[32, 16], target_kl=0.05, norm_reward=False)
    assert PPOConfig.from_file(config.to_file(tmp_path / "c.yaml")) == config


# --------------------------------------------------------------- seeds
def test_seed_ranges_are_disjoint():
    assert max(VALIDATION_SEEDS) < EVAL_SEED_START < TRAIN_SEED_LOW < TRAIN_SEED_HIGH


def test_training_episodes_use_training_seeds_only_and_reseed_deterministically():
    def seeds(stream_seed: int, episodes: int) -> list[int]:
        env = TrainingSeeds(gym.make("CrossBorderDispatch-v0", scenario="tiny"), stream_seed=0)
        out = [env.reset(seed=stream_seed)[1]["episode_seed"]]
        out += [env.reset()[1]["episode_seed"] for _ in range(episodes - 1)]
        assert env.unwrapped.episode_seed == out[-1]
        return out

    a, b, c = seeds(5, 50), seeds(5, 50), seeds(6, 50)
    assert a == b and a != c
    assert all(TRAIN_SEED_LOW <= s < TRAIN_SEED_HIGH for s in a + c)
    assert len(set(a)) == len(a)


def test_vec_env_ranks_get_distinct_training_streams():
    config = tiny_config()
    first = [make_env(config, rank)().reset(seed=config.seed + rank)[1]["episode_seed"] for rank in range(2)]
    assert first[0] != first[1]


# --------------------------------------------------------------- masks
@pytest.mark.parametrize("env_id", list(envs.ENV_IDS))
def test_view_mask_equals_env_mask_along_a_trajectory(env_id):
    env = gym.make(env_id, scenario="table1")
    base = env.unwrapped
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(base.net.T):
        mask = base.action_masks()
        np.testing.assert_array_equal(base.view().action_mask(), mask)
        action = np.array([rng.choice(np.flatnonzero(m)) for m in split_mask(mask, base.action_space.nvec)])
        env.step(action)


class MaskAudit(gym.Wrapper):
    """Counts steps and the slots whose chosen value the mask forbids."""

    def __init__(self, env):
        super().__init__(env)
        self.steps = 0
        self.violations = 0

    def step(self, action):
        mask = self.env.unwrapped.action_masks()
        parts = split_mask(mask, self.env.unwrapped.action_space.nvec)
        self.violations += sum(not part[a] for part, a in zip(parts, np.asarray(action), strict=True))
        self.steps += 1
        return self.env.step(action)


def _audited_training(algo: str) -> tuple[int, int]:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.factory import ALGO_CLASSES

    config = PPOConfig(
        algo=algo, scenario="table1", n_envs=2, n_steps=60, batch_size=60, total_timesteps=240, net_arch=[32]
    ).validate()
    audits = []

    def thunk(rank):
        def make():
            audits.append(MaskAudit(make_env(config, rank)()))
            return audits[-1]

        return make

    venv = DummyVecEnv([thunk(0), thunk(1)])
    model = ALGO_CLASSES[algo]("MlpPolicy", venv, n_steps=60, batch_size=60, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=240)
    return sum(a.steps for a in audits), sum(a.violations for a in audits)


def test_masked_ppo_never_takes_a_masked_action_while_training():
    steps, violations = _audited_training("maskable-ppo")
    assert steps >= 240 and violations == 0
    # the audit has teeth: an unmasked PPO on the same env does pick forbidden choices
    _, unmasked_violations = _audited_training("ppo")
    assert unmasked_violations > 0


def test_masked_agent_never_takes_a_masked_action_at_evaluation():
    config = tiny_config(scenario="table1", n_steps=30, batch_size=30, total_timesteps=60, net_arch=[32])
    model, venv = train_in_process(config, 60)
    meta = AgentMeta("maskable-ppo", config.env_id, "table1", "", 3, (), (), 0)
    agent = PPOAgent(model, venv, meta, envs.load_scenario("table1"))
    env = gym.make(config.env_id, scenario="table1")
    for seed in (EVAL_SEED_START, EVAL_SEED_START + 1):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            view = env.unwrapped.view()
            action = agent.act(obs, view)
            parts = split_mask(view.action_mask(), env.action_space.nvec)
            assert all(part[a] for part, a in zip(parts, action, strict=True))
            obs, _, done, _, _ = env.step(action)


# ------------------------------------------------------------ save / load
def test_save_load_round_trip_gives_identical_actions(tmp_path):
    config = tiny_config(total_timesteps=96)
    model, venv = train_in_process(config, 96)
    save_agent(tmp_path / "agent", model, venv, config)
    loaded = load_agent(tmp_path / "agent")
    assert isinstance(loaded, Policy)
    scenario = envs.load_scenario("tiny")
    fresh = PPOAgent(model.policy, venv, loaded.meta, scenario)
    env = gym.make(config.env_id, scenario="tiny")
    assert loaded.env_id == "CrossBorderDispatch-v0" and loaded.scenario_name == "tiny"
    assert loaded.scenario_hash == scenario.content_hash()
    assert loaded.observation_shape == env.observation_space.shape
    assert loaded.action_nvec == tuple(env.action_space.nvec)
    loaded.check_env(env)
    np.testing.assert_array_equal(loaded.normalizer.obs_mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(loaded.normalizer.obs_var, venv.obs_rms.var)
    for seed in range(EVAL_SEED_START, EVAL_SEED_START + 20):
        a, b = run_episode(env, loaded, seed), run_episode(env, fresh, seed)
        assert len(a.actions) == len(b.actions) == 3
        for x, y in zip(a.actions, b.actions, strict=True):
            np.testing.assert_array_equal(x, y)
        assert a.episode_return == b.episode_return
    # deterministic: the same seed twice gives the same episode
    assert run_episode(env, loaded, 7).episode_return == run_episode(env, loaded, 7).episode_return


def test_load_agent_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_agent(tmp_path / "nothing")
    config = tiny_config()
    model, venv = train_in_process(config, 48)
    save_agent(tmp_path / "agent", model, venv, config)
    with pytest.raises(AgentMismatchError, match="scenario_hash.*observation_shape.*action_nvec"):
        load_agent(tmp_path / "agent", env=gym.make("CrossBorderDispatch-v0", scenario="table1"))
    with pytest.raises(
        AgentMismatchError, match="env_id: agent 'CrossBorderDispatch-v0' vs env 'CrossBorderRouting-v0'"
    ):
        load_agent(tmp_path / "agent", env=gym.make("CrossBorderRouting-v0", scenario="tiny"))
    (tmp_path / "agent" / "agent.json").unlink()
    with pytest.raises(CheckpointError, match="missing agent.json"):
        load_agent(tmp_path / "agent" / "policy.safetensors")


def test_ratio_to_optimum_reads_the_same_for_profits_and_costs():
    assert ratio_to_optimum(90.0, 100.0) == pytest.approx(0.9)
    assert ratio_to_optimum(-110.0, -100.0) == pytest.approx(0.9)
    assert ratio_to_optimum(100.0, 100.0) == 1.0


# ----------------------------------------------------------- determinism
@pytest.mark.slow
def test_seeded_training_twice_gives_identical_parameters():
    config = tiny_config(total_timesteps=144, seed=3)
    a, _ = train_in_process(config, 144)
    b, _ = train_in_process(config, 144)
    c, _ = train_in_process(tiny_config(total_timesteps=144, seed=4), 144)
    pa, pb, pc = (m.policy.state_dict() for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


# ------------------------------------------------------- imitation warm start
def test_imitation_warm_start_copies_the_teacher_and_feeds_the_normalizer():
    from agents.pretrain import collect_teacher, pretrain

    config = tiny_config(pretrain_teacher="greedy", pretrain_episodes=100, pretrain_epochs=20, net_arch=[32])
    venv = make_normalized_vec_env(config)
    model = build_model(config, venv)
    data = collect_teacher(config, 100)
    assert data.obs.shape == (300, 20) and data.dones.sum() == 100

    def agreement() -> float:
        obs = torch.as_tensor(venv.normalize_obs(data.obs).astype(np.float32))
        with torch.no_grad():
            mode = model.policy.get_distribution(obs, action_masks=data.masks).mode()
        return float((mode == torch.as_tensor(data.actions)).float().mean())

    before = agreement()
    figures = pretrain(model, venv, config)  # collects the same episodes again: same stream seed
    assert figures["env_steps"] == 300 and figures["teacher_mean_return"] == round(data.mean_return, 2)
    assert figures["slot_agreement"] == round(agreement(), 4)
    assert figures["slot_agreement"] >= 0.85 and figures["slot_agreement"] > before + 0.1
    assert venv.obs_rms.count == pytest.approx(300, abs=1e-3) and venv.ret_rms.count == pytest.approx(300, abs=1e-3)


def test_teacher_episodes_on_two_processes_are_the_episodes_of_one():
    """collect_teacher on a backend plays the same training seeds, in the same order, with the same data; the
    env's seed stream then continues as if they had been played in it."""
    from agents.pretrain import collect_teacher, teacher_env
    from evaluation.backends import LocalBackend

    config = tiny_config(pretrain_teacher="base-stock", pretrain_episodes=6)
    alone_env, pooled_env = teacher_env(config), teacher_env(config)
    alone = collect_teacher(config, 6, env=alone_env)
    backend = LocalBackend(2)
    pooled = collect_teacher(config, 6, env=pooled_env, backend=backend)
    backend.close()
    for field in ("obs", "masks", "actions", "rewards", "dones"):
        assert np.array_equal(getattr(alone, field), getattr(pooled, field)), field
    assert alone.mean_return == pooled.mean_return and alone.dones.sum() == 6
    assert alone_env.next_seeds(3) == pooled_env.next_seeds(3)


def test_unknown_teacher_is_refused():
    allowed = "pretrain_teacher='oracle' is not allowed; allowed: .*base-stock.*rolling-milp"
    with pytest.raises(ConfigError, match=allowed):
        tiny_config(pretrain_teacher="oracle")


def test_rolling_milp_teacher_is_cloned_and_dagger_labels_the_learners_states():
    from agents.pretrain import collect_teacher, make_teacher, pretrain
    from baselines.rolling import RollingHorizonPolicy

    config = tiny_config(
        pretrain_teacher="rolling-milp",
        pretrain_teacher_window=3,
        pretrain_teacher_time_limit=5.0,
        pretrain_episodes=30,
        pretrain_epochs=20,
        pretrain_dagger_rounds=1,
        pretrain_dagger_episodes=10,
        net_arch=[32],
    )
    teacher = make_teacher(config, "tiny")
    assert isinstance(teacher, RollingHorizonPolicy)
    assert (teacher.window, teacher.time_limit, teacher.mip_gap) == (3, 5.0, config.pretrain_teacher_mip_gap)
    data = collect_teacher(config, 30)  # what the teacher did on the first 30 training episodes
    assert data.daily_solves == 90 and data.time_limit_hits == 0  # tiny solves to the gap in milliseconds

    venv = make_normalized_vec_env(config)
    model = build_model(config, venv)
    figures = pretrain(model, venv, config)
    assert figures["teacher"] == "rolling-milp" and figures["window"] == 3 and figures["time_limit"] == 5.0
    assert figures["teacher_mean_return"] == round(data.mean_return, 2)  # same stream, same teacher episodes
    assert figures["env_steps"] == 90 + 30 and figures["daily_solves"] == 120  # + one DAgger round of 10 episodes
    (round_,) = figures["dagger_rounds"]
    assert 0 <= round_["learner_slot_agreement_before_refit"] <= 1
    # the cloned policy follows the MILP on the teacher's own states, not just "it ran"
    obs = torch.as_tensor(venv.normalize_obs(data.obs).astype(np.float32))
    with torch.no_grad():
        mode = model.policy.get_distribution(obs, action_masks=data.masks).mode()
    assert float((mode == torch.as_tensor(data.actions)).float().mean()) >= 0.8
    assert figures["slot_agreement"] >= 0.8


# ------------------------------------------------------------ shipped agents
@pytest.mark.parametrize("scenario", ["table1", "table1-det", "promo", "scarce"])
def test_shipped_agent_loads_fits_its_env_and_beats_greedy_on_a_held_out_seed(scenario):
    from agents import shipped_agent_path
    from baselines.heuristics import GreedyPolicy

    path = shipped_agent_path(scenario, "CrossBorderDispatch-v0")
    assert path.name == f"{scenario}__CrossBorderDispatch-v0"
    command = (path / "TRAIN_COMMAND.txt").read_text().splitlines()[0]
    assert command.startswith("python train.py ") and f"--scenario {scenario} " in command
    assert "--env CrossBorderDispatch-v0" in command and "--algo maskable-ppo" in command
    assert sum(f.stat().st_size for f in path.iterdir()) < 5 * 2**20  # a few MB at most
    env = gym.make("CrossBorderDispatch-v0", scenario=scenario)
    agent = load_agent(path, env=env)
    assert agent.masked and agent.meta.num_timesteps > 0
    first, again = run_episode(env, agent, EVAL_SEED_START), run_episode(env, agent, EVAL_SEED_START)
    assert first.episode_return == again.episode_return  # deterministic at evaluation
    assert first.episode_return > run_episode(env, GreedyPolicy(scenario), EVAL_SEED_START).episode_return


SHIPPED = sorted(p for p in (Path(__file__).resolve().parents[1] / "agents" / "checkpoints").iterdir() if p.is_dir())


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_agent_plays_its_recorded_held_out_return_and_no_masked_action(path):
    recorded = json.loads((path / "held_out.json").read_text())  # {"seed": ..., "return": ...}, written when shipped
    meta = json.loads((path / "agent.json").read_text())
    env = gym.make(meta["env_id"], scenario=meta["scenario_name"])
    agent = load_agent(path, env=env)
    result = run_episode(env, agent, recorded["seed"], record=True)
    assert recorded["seed"] >= EVAL_SEED_START  # a held-out seed, never a training or validation one
    assert result.episode_return == pytest.approx(recorded["return"], rel=1e-9, abs=1e-6)
    nvec = env.action_space.nvec
    offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    for action, mask in zip(result.actions, result.masks, strict=True):
        assert mask[offsets + action].all()  # every slot's choice was allowed by the mask


@pytest.mark.slow
def test_subproc_vec_env_trains_like_dummy():
    dummy, venv_d = train_in_process(tiny_config(total_timesteps=96, seed=5), 96)
    subproc, venv_s = train_in_process(tiny_config(total_timesteps=96, seed=5, vec_env="subproc"), 96)
    venv_s.close()
    # same episodes, observations and actions; SB3's DummyVecEnv stores rewards as float32 and
    # SubprocVecEnv as float64, so the normalized rewards, hence the parameters, differ by rounding only
    np.testing.assert_array_equal(venv_d.obs_rms.mean, venv_s.obs_rms.mean)
    pd, ps = dummy.policy.state_dict(), subproc.policy.state_dict()
    assert all(torch.allclose(pd[k], ps[k], rtol=0, atol=1e-5) for k in pd)
    assert not all(
        torch.allclose(pd[k], p0, rtol=0, atol=1e-5)
        for k, p0 in build_model(tiny_config(seed=5), venv_d).policy.state_dict().items()
    )  # and training did move them
