"""A trained PPO / MaskablePPO agent as a :class:`evaluation.episode.Policy`: saving, loading and playing it.

The files of an agent directory, and why reading one runs no code from it, are in
:mod:`agents.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from agents.checkpoint import (
    POLICY_FILE,
    AgentFiles,
    AgentMeta,
    CheckpointError,
    Normalization,
    read_agent,
    write_agent,
)
from agents.config import PPOConfig
from agents.factory import build_policy
from envs.scenario import Scenario, load_scenario
from envs.view import DayView

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"


class AgentMismatchError(ValueError):
    """The agent was trained for another env id, scenario, observation or action space."""


def env_signature(env: gym.Env) -> dict:
    """What an agent must match: env id, scenario hash, observation shape, action nvec."""
    base = env.unwrapped
    return {
        "env_id": env.spec.id if env.spec is not None else None,
        "scenario_hash": base.scenario.content_hash(),
        "observation_shape": tuple(int(n) for n in base.observation_space.shape),
        "action_nvec": tuple(int(n) for n in base.action_space.nvec),
    }


class PPOAgent:
    """A trained agent behind the shared policy interface: ``reset(seed)``, ``act(obs, view) -> action``.

    ``act`` normalizes ``obs`` with the saved running statistics and returns the policy's most likely
    action (deterministic); a masked agent applies the mask of ``view``. ``policy`` is the SB3 policy
    module; ``normalizer`` anything with ``norm_obs`` and ``normalize_obs`` (the saved
    :class:`agents.checkpoint.Normalization`, or the live ``VecNormalize`` during training). Attributes
    for compatibility checks: ``env_id``, ``scenario_name``, ``scenario_hash``, ``observation_shape``,
    ``action_nvec``.
    """

    def __init__(self, policy, normalizer, meta: AgentMeta, scenario: Scenario, name: str | None = None):
        self.policy = policy
        self.normalizer = normalizer
        self.meta = meta
        self.scenario = scenario
        self.name = name or meta.algo
        self.masked = meta.algo == "maskable-ppo"

    env_id = property(lambda self: self.meta.env_id)
    scenario_name = property(lambda self: self.meta.scenario_name)
    scenario_hash = property(lambda self: self.meta.scenario_hash)
    observation_shape = property(lambda self: self.meta.observation_shape)
    action_nvec = property(lambda self: self.meta.action_nvec)

    def reset(self, seed: int | None = None) -> None:
        pass  # deterministic and memoryless: nothing to reset

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if self.normalizer is not None and self.normalizer.norm_obs:
            obs = self.normalizer.normalize_obs(obs).astype(np.float32)
        if self.masked:
            action, _ = self.policy.predict(obs, deterministic=True, action_masks=view.action_mask())
        else:
            action, _ = self.policy.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.int64)

    def check_env(self, env: gym.Env) -> None:
        """Raise :class:`AgentMismatchError` listing every difference between this agent and ``env``."""
        mine = {
            "env_id": self.env_id,
            "scenario_hash": self.scenario_hash,
            "observation_shape": tuple(self.observation_shape),
            "action_nvec": tuple(self.action_nvec),
        }
        theirs = env_signature(env)
        diffs = [f"{k}: agent {mine[k]!r} vs env {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]
        if diffs:
            short = [d if len(d) < 200 else d[:200] + "..." for d in diffs]
            raise AgentMismatchError(
                f"agent {self.name!r} (trained on {self.env_id} / scenario {self.scenario_name!r}) does not fit "
                f"this env ({env.unwrapped.scenario.name!r}): "
                + "; ".join(short)
                + f". Train one with: python train.py --env {theirs['env_id']} --scenario <this scenario>"
            )


def agent_meta(model, config: PPOConfig) -> AgentMeta:
    scenario = load_scenario(config.scenario)
    return AgentMeta(
        algo=config.algo,
        env_id=config.env_id,
        scenario_name=scenario.name,
        scenario_hash=scenario.content_hash(),
        forecast_days=config.forecast_days,
        observation_shape=tuple(int(n) for n in model.observation_space.shape),
        action_nvec=tuple(int(n) for n in model.action_space.nvec),
        num_timesteps=int(model.num_timesteps),
    )


def save_agent(directory: str | Path, model, normalizer, config: PPOConfig) -> Path:
    """Write the agent of an SB3 ``model`` (and its ``VecNormalize`` statistics, if any) as an agent directory."""
    return write_agent(
        directory,
        agent_meta(model, config),
        config,
        load_scenario(config.scenario),
        model.policy.state_dict(),
        model.policy.optimizer.state_dict(),
        Normalization.of(normalizer) if normalizer is not None else None,
    )


def policy_of(files: AgentFiles, observation_space: gym.Space, action_space: gym.Space):
    """The agent's policy module rebuilt from its config and filled with its saved weights."""
    policy = build_policy(files.config, observation_space, action_space)
    try:
        policy.load_state_dict(files.policy_state)
    except RuntimeError as err:  # missing, unexpected or mis-shaped tensors
        raise CheckpointError(
            f"{files.directory / POLICY_FILE} does not fit the network of config.yaml: {err}"
        ) from None
    policy.set_training_mode(False)
    return policy


def load_agent(path: str | Path, env: gym.Env | None = None, name: str | None = None, trust: bool = False) -> PPOAgent:
    """Load an agent directory as a policy; with ``env``, check that it fits.

    Raises :class:`agents.checkpoint.CheckpointError` naming a missing, damaged or edited file (a directory in
    the old pickle-based format needs ``trust=True``) and :class:`AgentMismatchError` when ``env`` differs from
    what the agent was trained on.
    """
    files = read_agent(path, trust=trust)
    meta = files.meta
    probe = gym.make(meta.env_id, scenario=files.scenario, forecast_days=meta.forecast_days)
    if (
        tuple(probe.observation_space.shape) != meta.observation_shape
        or tuple(probe.action_space.nvec) != meta.action_nvec
    ):
        raise AgentMismatchError(
            f"{files.directory}: agent.json's spaces {meta.observation_shape}, {len(meta.action_nvec)} action slots do "
            f"not match its own scenario.yaml under {meta.env_id} ({probe.observation_space.shape}, "
            f"{len(probe.action_space.nvec)} slots)"
        )
    policy = policy_of(files, probe.observation_space, probe.action_space)
    probe.close()
    agent = PPOAgent(policy, files.normalization, meta, files.scenario, name=name)
    if env is not None:
        agent.check_env(env)
    return agent


def shipped_agent_path(scenario_name: str, env_id: str = "CrossBorderDispatch-v0") -> Path:
    """Directory of the agent shipped for ``scenario_name`` and ``env_id`` (may not exist)."""
    return SHIPPED_DIR / f"{scenario_name}__{env_id}"
