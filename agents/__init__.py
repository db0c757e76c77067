"""PPO and masked PPO agents: configuration, model building, and trained agents as policies.

``load_agent(path)`` returns a :class:`agents.policy.PPOAgent` with the same interface as the
baselines (``reset(seed)``, ``act(obs, view)``); ``train.py`` trains and writes agent directories.
Shipped agents live in ``agents/checkpoints/<scenario>__<env-id>/``.
"""

from agents.config import (
    EVAL_SEED_START,
    TRAIN_SEED_HIGH,
    TRAIN_SEED_LOW,
    VALIDATION_SEEDS,
    ConfigError,
    PPOConfig,
)
from agents.policy import AgentMismatchError, PPOAgent, load_agent, shipped_agent_path

__all__ = [
    "EVAL_SEED_START",
    "TRAIN_SEED_HIGH",
    "TRAIN_SEED_LOW",
    "VALIDATION_SEEDS",
    "AgentMismatchError",
    "ConfigError",
    "PPOAgent",
    "PPOConfig",
    "load_agent",
    "shipped_agent_path",
]
