"""The one interface every policy shares, and the episode runner that uses it.

A policy is anything with ``reset(seed)`` and ``act(obs, view) -> action``:
``obs`` is the env's observation vector, ``view`` the :class:`envs.view.DayView`
of the same moment (what a dispatcher knows today). PPO agents read ``obs``;
heuristics and the rolling-horizon MILP read ``view`` and the scenario. None of
them may read the realization, which is what makes their comparison with the
hindsight MILP honest. ``evaluate.py`` treats them all alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from envs.dynamics import TERM_NAMES
from envs.view import DayView


@runtime_checkable
class Policy(Protocol):
    name: str

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray: ...


@dataclass
class EpisodeResult:
    seed: int
    episode_return: float
    terms: dict[str, float]  # per reward term, summed over the episode (positive magnitudes but Eq.2)
    kpis: dict[str, float]
    actions: list[np.ndarray] = field(default_factory=list)
    decision_seconds: float = 0.0  # total time spent in policy.act

    @property
    def steps(self) -> int:
        return len(self.actions)


def run_episode(env: gym.Env, policy: Policy, seed: int, realization=None) -> EpisodeResult:
    """Play one episode of ``policy`` on ``env`` with realization ``scenario.sample(seed)`` (or the one given)."""
    base = env.unwrapped
    options = {"realization": realization} if realization is not None else None
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(seed)
    total, terms, actions, spent = 0.0, dict.fromkeys(TERM_NAMES, 0.0), [], 0.0
    done = False
    while not done:
        view = base.view()
        t0 = time.perf_counter()
        action = policy.act(obs, view)
        spent += time.perf_counter() - t0
        actions.append(np.asarray(action, dtype=np.int64).copy())
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        for name in TERM_NAMES:
            terms[name] += info["reward_terms"][name]
        done = terminated or truncated
    return EpisodeResult(seed, total, terms, info["episode_kpis"], actions, spent)
