"""The tensor masked distribution (agents/distribution.py) against sb3-contrib's, which it replaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution

from agents import load_agent
from agents.config import PPOConfig
from agents.distribution import TensorMaskablePolicy, TensorMaskedMultiCategorical
from agents.factory import build_model, build_policy, make_normalized_vec_env
from agents.policy import PPOAgent, shipped_agent_path
from evaluation.episode import run_episode


def random_case(rng: np.random.Generator, nvec: list[int], batch: int):
    logits = th.as_tensor(rng.normal(0, 3, (batch, sum(nvec))), dtype=th.float32)
    masks = rng.random((batch, sum(nvec))) < 0.5
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    masks[:, starts] = True  # as in the env: the null choice is always allowed
    return logits, masks


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("masked", [True, False])
def test_log_probs_entropies_and_mode_match_sb3_contrib(seed, masked):
    rng = np.random.default_rng(seed)
    nvec = [int(n) for n in rng.integers(1, 7, size=12)] + [1, 1]  # includes slots with a single choice
    logits, masks = random_case(rng, nvec, batch=256)
    theirs = MaskableMultiCategoricalDistribution(nvec).proba_distribution(logits)
    ours = TensorMaskedMultiCategorical(nvec).proba_distribution(logits)
    if masked:
        theirs.apply_masking(masks)
        ours.apply_masking(masks)
    actions = theirs.sample()
    np.testing.assert_allclose(ours.log_prob(actions), theirs.log_prob(actions), rtol=0, atol=1e-6 * len(nvec))
    np.testing.assert_allclose(ours.entropy(), theirs.entropy(), rtol=1e-6, atol=1e-6)
    assert th.equal(ours.mode(), theirs.mode())


def test_samples_follow_the_distribution_and_respect_masks():
    rng = np.random.default_rng(0)
    nvec = [3, 4]
    logits, masks = random_case(rng, nvec, batch=1)
    logits, masks = logits.repeat(20_000, 1), np.repeat(masks, 20_000, axis=0)
    dist = TensorMaskedMultiCategorical(nvec).proba_distribution(logits)
    dist.apply_masking(masks)
    th.manual_seed(0)
    draws = dist.sample().numpy()
    for slot, n in enumerate(nvec):
        start = sum(nvec[:slot])
        allowed = masks[0, start : start + n]
        freq = np.bincount(draws[:, slot], minlength=n) / len(draws)
        expected = np.exp(dist._log_probs[0, slot, :n].numpy())
        assert np.all(freq[~allowed] == 0)
        np.testing.assert_allclose(freq, expected, atol=0.015)  # 20,000 draws: a few standard errors


def test_gradients_are_finite_through_masked_and_padded_choices():
    rng = np.random.default_rng(1)
    nvec = [1, 5, 2]
    logits, masks = random_case(rng, nvec, batch=32)
    logits.requires_grad_(True)
    dist = TensorMaskedMultiCategorical(nvec).proba_distribution(logits)
    dist.apply_masking(masks)
    (dist.log_prob(dist.sample()).sum() + dist.entropy().sum()).backward()
    assert th.isfinite(logits.grad).all()


def test_a_shipped_checkpoint_acts_the_same_with_either_distribution():
    path = shipped_agent_path("table1")
    tensor = load_agent(path)
    assert isinstance(tensor.policy, TensorMaskablePolicy)
    config = PPOConfig.from_dict({**PPOConfig.from_file(path / "config.yaml").to_dict(), "distribution": "sb3-contrib"})
    env = gym.make("CrossBorderDispatch-v0", scenario=tensor.scenario, forecast_days=tensor.meta.forecast_days)
    legacy_policy = build_policy(config, env.observation_space, env.action_space)
    legacy_policy.load_state_dict(tensor.policy.state_dict())
    legacy = PPOAgent(legacy_policy, tensor.normalizer, tensor.meta, tensor.scenario)
    for seed in (1000, 1001, 1002):
        a, b = run_episode(env, tensor, seed), run_episode(env, legacy, seed)
        assert all(np.array_equal(x, y) for x, y in zip(a.actions, b.actions, strict=True))
        assert a.episode_return == b.episode_return


def test_masked_ppo_learns_with_the_tensor_distribution():
    config = PPOConfig(scenario="tiny", n_envs=2, n_steps=24, batch_size=16, n_epochs=2, total_timesteps=48,
                       eval_freq=0, hindsight=False, net_arch=[16]).validate()  # fmt: skip
    model = build_model(config, make_normalized_vec_env(config))
    assert isinstance(model.policy, TensorMaskablePolicy)
    model.learn(48)
    assert model.num_timesteps == 48
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
