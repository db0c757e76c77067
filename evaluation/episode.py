"""The one interface every policy shares, and the one episode loop that plays it.

A policy is anything with ``reset(seed)`` and ``act(obs, view) -> action``:
``obs`` is the env's observation vector, ``view`` the :class:`envs.view.DayView`
of the same moment (what a dispatcher knows today). PPO agents read ``obs``;
heuristics and the rolling-horizon MILP read ``view`` and the scenario. None of
them may read the realization, which is what makes their comparison with the
hindsight MILP honest. ``evaluate.py``, training's validation, the warm start's
teacher episodes, the hindsight replay and the benchmarks all play episodes
through :func:`run_episode`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from envs.realization import Realization
from envs.reward import TERM_NAMES
from envs.view import DayView


@runtime_checkable
class Policy(Protocol):
    name: str

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray: ...


@dataclass
class EpisodeResult:
    seed: int  # the realization's seed
    episode_return: float  # USD
    terms: dict[str, float]  # per reward term, summed over the episode (positive magnitudes but Eq.2)
    kpis: dict[str, float]
    actions: list[np.ndarray] = field(default_factory=list)  # the action played each day (int64)
    decision_seconds: float = 0.0  # total time spent in policy.act
    # with record=True: what the policy saw and what each day paid
    observations: list[np.ndarray] = field(default_factory=list)  # [obs_dim] float32 before each action
    masks: list[np.ndarray] = field(default_factory=list)  # [sum(nvec)] bool, the flat mask before each action
    rewards: list[float] = field(default_factory=list)  # USD per day

    @property
    def steps(self) -> int:
        return len(self.actions)


def run_episode(
    env: gym.Env,
    policy: Policy,
    seed: int | None = None,
    realization: Realization | None = None,
    record: bool = False,
) -> EpisodeResult:
    """Play one whole episode of ``policy`` on ``env``.

    The realization is ``scenario.sample(seed)`` (or ``realization`` when given); ``seed=None`` leaves the
    choice to the env and its wrappers (training seeds drawn from a stream). The policy is reset with the
    episode's seed before its first action, so a row is a pure function of (policy, seed). With ``record``,
    the observations, masks and daily rewards are kept too.
    """
    base = env.unwrapped
    options = {"realization": realization} if realization is not None else None
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(base.episode_seed)
    result = EpisodeResult(int(base.episode_seed), 0.0, dict.fromkeys(TERM_NAMES, 0.0), {})
    done = False
    while not done:
        view = base.view()
        if record:
            result.observations.append(obs)
            result.masks.append(view.action_mask())
        t0 = time.perf_counter()
        action = policy.act(obs, view)
        result.decision_seconds += time.perf_counter() - t0
        result.actions.append(np.asarray(action, dtype=np.int64).copy())
        obs, reward, terminated, truncated, info = env.step(action)
        result.episode_return += reward
        for name in TERM_NAMES:
            result.terms[name] += info["reward_terms"][name]
        if record:
            result.rewards.append(float(reward))
        done = terminated or truncated
    result.kpis = info["episode_kpis"]
    return result


class PlanReplay:
    """Plays a fixed day-by-day plan (a MILP's) through the policy interface."""

    name = "plan"

    def __init__(self, plan: Iterable[np.ndarray], name: str | None = None) -> None:
        self.plan = [np.asarray(a, dtype=np.int64) for a in plan]
        self.name = name or self.name

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: np.ndarray, view: DayView) -> np.ndarray:
        return self.plan[view.day]
