"""Build the training VecEnv and the PPO / MaskablePPO model from a :class:`PPOConfig`.

The VecEnv stack, inside out: the registered env -> :class:`TrainingSeeds` (each
episode's realization seed drawn in ``[TRAIN_SEED_LOW, TRAIN_SEED_HIGH)``) ->
:class:`EpisodeTerms` (per-episode reward terms in the last step's info) ->
``Monitor`` (``info["episode"]``) -> ``DummyVecEnv`` / ``SubprocVecEnv`` -> ``VecNormalize``.
MaskablePPO finds the masks through ``VecEnv.env_method("action_masks")``, which
reaches ``CrossBorderDispatchEnv.action_masks`` through every wrapper; after an
auto-reset it returns the mask of the new episode's first day, as it must.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

import envs  # noqa: F401 - registers the env ids
from agents.config import TRAIN_SEED_HIGH, TRAIN_SEED_LOW, PPOConfig, resolve_device
from agents.distribution import TensorMaskablePolicy
from agents.vec_env import BatchedVecEnv
from envs.reward import TERM_NAMES

ALGO_CLASSES = {"maskable-ppo": MaskablePPO, "ppo": PPO}
ACTIVATION_CLASSES = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


class TrainingSeeds(gym.Wrapper):
    """Resets every episode with a realization seed drawn from a private stream in ``[TRAIN_SEED_LOW,
    TRAIN_SEED_HIGH)``, disjoint from validation (900-909) and evaluation (1000+) seeds.

    ``reset(seed=s)`` re-seeds the stream with ``s`` (SB3 does so once per env, with ``seed + rank``);
    ``reset()`` (auto-reset) draws the next seed from it. The drawn seed is ``info["episode_seed"]``.
    """

    def __init__(self, env: gym.Env, stream_seed: int = 0) -> None:
        super().__init__(env)
        self._stream = np.random.default_rng(stream_seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._stream = np.random.default_rng(seed)
        episode_seed = self.next_seeds(1)[0]
        obs, info = self.env.reset(seed=episode_seed, options=options)
        info["episode_seed"] = episode_seed
        return obs, info

    def next_seeds(self, n: int) -> list[int]:
        """The episode seeds the next ``n`` resets without a seed would play; the stream advances past them (so
        episodes can be played elsewhere, e.g. in parallel, and later resets continue the same stream)."""
        return [int(self._stream.integers(TRAIN_SEED_LOW, TRAIN_SEED_HIGH)) for _ in range(n)]


class EpisodeTerms(gym.Wrapper):
    """Sums ``info["reward_terms"]`` over the episode and puts the sums in the last step's
    ``info["episode_terms"]`` (USD, positive magnitudes except Eq.2), beside the env's KPIs.
    ``env_seconds`` accumulates the wall time spent inside the env (reset and step), to report
    the env's share of the training time."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.env_seconds = 0.0
        self._sums = dict.fromkeys(TERM_NAMES, 0.0)

    def reset(self, **kwargs):
        self._sums = dict.fromkeys(TERM_NAMES, 0.0)
        start = time.perf_counter()
        out = self.env.reset(**kwargs)
        self.env_seconds += time.perf_counter() - start
        return out

    def step(self, action):
        start = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.env_seconds += time.perf_counter() - start
        for name in TERM_NAMES:
            self._sums[name] += info["reward_terms"][name]
        if terminated or truncated:
            info["episode_terms"] = dict(self._sums)
        return obs, reward, terminated, truncated, info


def make_env(config: PPOConfig, rank: int = 0) -> Callable[[], gym.Env]:
    """A thunk building one training env (picklable, for ``SubprocVecEnv``)."""

    def thunk() -> gym.Env:
        env = gym.make(config.env_id, scenario=config.scenario, forecast_days=config.forecast_days)
        env = TrainingSeeds(env, stream_seed=config.seed + rank)
        env = EpisodeTerms(env)
        return Monitor(env)

    return thunk


def make_eval_env(config: PPOConfig) -> gym.Env:
    """A plain env (no training wrappers) for validation and evaluation on fixed seeds."""
    return gym.make(config.env_id, scenario=config.scenario, forecast_days=config.forecast_days)


def make_vec_env(config: PPOConfig) -> VecEnv:
    """The raw VecEnv (no normalization) of ``config.n_envs`` training envs: the batched env by default."""
    if config.vec_env == "batched":
        return BatchedVecEnv(config)
    thunks = [make_env(config, rank) for rank in range(config.n_envs)]
    vec_cls = SubprocVecEnv if config.vec_env == "subproc" else DummyVecEnv
    return vec_cls(thunks)


def make_normalized_vec_env(config: PPOConfig, normalization=None) -> VecNormalize:
    """Training VecEnv wrapped in ``VecNormalize``; with ``normalization`` (an
    :class:`agents.checkpoint.Normalization`), its running statistics are restored (``--resume``)."""
    norm = VecNormalize(
        make_vec_env(config),
        norm_obs=config.norm_obs,
        norm_reward=config.norm_reward,
        clip_obs=config.clip_obs,
        clip_reward=config.clip_reward,
        gamma=config.gamma,
    )
    if normalization is not None:
        normalization.restore_into(norm)
    return norm


def policy_kwargs(config: PPOConfig) -> dict:
    """The policy network of ``config``, as SB3's ``policy_kwargs`` (one place for training and loading)."""
    return {
        "net_arch": {"pi": list(config.net_arch), "vf": list(config.net_arch)},
        "activation_fn": ACTIVATION_CLASSES[config.activation_fn],
    }


def policy_class(config: PPOConfig) -> type:
    """The actor-critic class of ``config``: masked PPO with the tensor distribution (``agents/distribution.py``)
    or sb3-contrib's, plain PPO with SB3's "MlpPolicy"."""
    if config.algo == "maskable-ppo" and config.distribution == "tensor":
        return TensorMaskablePolicy
    return ALGO_CLASSES[config.algo].policy_aliases["MlpPolicy"]


def build_policy(config: PPOConfig, observation_space: gym.Space, action_space: gym.Space):
    """The policy module ``build_model`` would create for these spaces, built by our code so that loading an
    agent never deserializes an object from its files."""
    cls = policy_class(config)
    policy = cls(observation_space, action_space, lambda _: config.learning_rate, **policy_kwargs(config))
    policy.set_training_mode(False)
    return policy


def build_model(config: PPOConfig, venv: VecEnv, tensorboard_log: str | None = None):
    """A fresh PPO / MaskablePPO on ``venv``, seeded with ``config.seed``."""
    cls = ALGO_CLASSES[config.algo]
    return cls(
        policy_class(config),
        venv,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        target_kl=config.target_kl,
        policy_kwargs=policy_kwargs(config),
        tensorboard_log=tensorboard_log,
        seed=config.seed,
        device=resolve_device(config.device),
        verbose=0,
    )
