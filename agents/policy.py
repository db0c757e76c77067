"""A trained PPO / MaskablePPO agent as a :class:`evaluation.episode.Policy`, and its files on disk.

An agent directory (what ``train.py`` writes, and each ``agents/checkpoints/<scenario>__<env-id>/``):

| file | what |
|---|---|
| ``model.zip`` | the SB3 model |
| ``vecnormalize.pkl`` | the ``VecNormalize`` running statistics (observation mean/var, return std) |
| ``agent.json`` | env id, scenario name and content hash, observation shape, action nvec, algo, timesteps |
| ``config.yaml`` | the resolved :class:`agents.config.PPOConfig` |
| ``scenario.yaml`` | the scenario trained on (so a file-based scenario travels with the agent) |
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecNormalize

from agents.config import PPOConfig
from agents.factory import ALGO_CLASSES
from envs.files import atomic_target, write_atomic
from envs.scenario import Scenario, load_scenario
from envs.view import DayView

MODEL_FILE = "model.zip"
STATS_FILE = "vecnormalize.pkl"
META_FILE = "agent.json"
CONFIG_FILE = "config.yaml"
SCENARIO_FILE = "scenario.yaml"
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"


class AgentMismatchError(ValueError):
    """The agent was trained for another env id, scenario, observation or action space."""


@dataclass(frozen=True)
class AgentMeta:
    algo: str  # "maskable-ppo" or "ppo"
    env_id: str  # e.g. "CrossBorderDispatch-v0"
    scenario_name: str
    scenario_hash: str  # Scenario.content_hash() of the training scenario
    forecast_days: int
    observation_shape: tuple[int, ...]
    action_nvec: tuple[int, ...]
    num_timesteps: int  # env steps trained

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> AgentMeta:
        data = json.loads(text)
        data["observation_shape"] = tuple(data["observation_shape"])
        data["action_nvec"] = tuple(data["action_nvec"])
        return cls(**data)


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
    action (deterministic); a masked agent applies the mask rebuilt from ``view``. Attributes for
    compatibility checks: ``env_id``, ``scenario_name``, ``scenario_hash``, ``observation_shape``,
    ``action_nvec``.
    """

    def __init__(
        self, model, normalizer: VecNormalize | None, meta: AgentMeta, scenario: Scenario, name: str | None = None
    ):
        self.model = model
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
            action, _ = self.model.predict(obs, deterministic=True, action_masks=view.action_mask())
        else:
            action, _ = self.model.predict(obs, deterministic=True)
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


def save_agent(directory: str | Path, model, normalizer: VecNormalize | None, config: PPOConfig) -> Path:
    """Write an agent directory (see the module docstring); every file is written to a temp name then renamed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario(config.scenario)
    meta = AgentMeta(
        algo=config.algo,
        env_id=config.env_id,
        scenario_name=scenario.name,
        scenario_hash=scenario.content_hash(),
        forecast_days=config.forecast_days,
        observation_shape=tuple(int(n) for n in model.observation_space.shape),
        action_nvec=tuple(int(n) for n in model.action_space.nvec),
        num_timesteps=int(model.num_timesteps),
    )
    with atomic_target(directory / MODEL_FILE) as tmp:
        model.save(str(tmp))
    if normalizer is not None:
        with atomic_target(directory / STATS_FILE) as tmp:
            normalizer.save(str(tmp))
    write_atomic(directory / META_FILE, meta.to_json())
    config.to_file(directory / CONFIG_FILE)
    scenario.to_file(directory / SCENARIO_FILE)
    return directory


def load_agent(path: str | Path, env: gym.Env | None = None, name: str | None = None) -> PPOAgent:
    """Load an agent directory (or its ``model.zip``) as a policy; with ``env``, check that it fits.

    Raises ``FileNotFoundError`` naming the missing file, :class:`AgentMismatchError` when ``env``
    (or the saved scenario) differs from what the agent was trained on.
    """
    path = Path(path)
    directory = path.parent if path.suffix == ".zip" else path
    for needed in (MODEL_FILE, META_FILE, SCENARIO_FILE):
        if not (directory / needed).is_file():
            raise FileNotFoundError(
                f"no agent at {str(path)!r}: missing {needed}; an agent directory (written by train.py) holds "
                f"{MODEL_FILE}, {STATS_FILE}, {META_FILE}, {CONFIG_FILE} and {SCENARIO_FILE}"
            )
    meta = AgentMeta.from_json((directory / META_FILE).read_text())
    scenario = Scenario.from_file(directory / SCENARIO_FILE)
    if scenario.content_hash() != meta.scenario_hash:
        raise AgentMismatchError(
            f"{directory / SCENARIO_FILE} has hash {scenario.content_hash()} but {META_FILE} says {meta.scenario_hash}"
        )
    normalizer = None
    if (directory / STATS_FILE).is_file():
        with open(directory / STATS_FILE, "rb") as fh:
            normalizer = pickle.load(fh)  # a VecNormalize without its venv: normalize_obs only needs the stats
        normalizer.training = False
    model = ALGO_CLASSES[meta.algo].load(str(directory / MODEL_FILE), device="cpu")
    agent = PPOAgent(model, normalizer, meta, scenario, name=name)
    if env is not None:
        agent.check_env(env)
    return agent


def shipped_agent_path(scenario_name: str, env_id: str = "CrossBorderDispatch-v0") -> Path:
    """Directory of the agent shipped for ``scenario_name`` and ``env_id`` (may not exist)."""
    return SHIPPED_DIR / f"{scenario_name}__{env_id}"
