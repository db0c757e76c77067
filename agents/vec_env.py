"""The batched env as an SB3 ``VecEnv``: what ``MaskablePPO`` and ``PPO`` train on by default.

:class:`BatchedVecEnv` steps ``config.n_envs`` episodes with one :class:`envs.batched.BatchedDispatchEnv`
(one array program instead of ``n_envs`` Python envs) and gives SB3 exactly what the old stack of
wrappers gave it (``TrainingSeeds`` -> ``EpisodeTerms`` -> ``Monitor`` -> ``DummyVecEnv``,
``agents/factory.py``, still used with ``vec_env: dummy`` or ``subproc``):

* SB3's autoreset: the step that ends an episode returns the next episode's first observation, the last
  one in ``info["terminal_observation"]``;
* training seeds: member ``i``'s episodes draw their realization seeds in ``[TRAIN_SEED_LOW,
  TRAIN_SEED_HIGH)`` from a stream seeded with ``seed + i`` (``VecEnv.seed``), as ``TrainingSeeds`` does;
* at an episode's end, ``info["episode"]`` (``r``, ``l``, ``t`` as ``Monitor`` writes them),
  ``info["episode_terms"]`` (the reward terms summed over the episode) and ``info["episode_kpis"]``;
* ``env_method("action_masks")``, the masks sb3-contrib asks for, one row per member; ``get_attr("env_seconds")``,
  the time spent in the env, for the training summary.
"""

from __future__ import annotations

import time

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv

from agents.config import TRAIN_SEED_HIGH, TRAIN_SEED_LOW, PPOConfig
from envs.batched import BatchedDispatchEnv
from envs.layout import decisions_of
from envs.reward import TERM_NAMES


class BatchedVecEnv(VecEnv):
    def __init__(self, config: PPOConfig) -> None:
        n = config.n_envs
        self._streams = [np.random.default_rng(config.seed + rank) for rank in range(n)]
        self.env = BatchedDispatchEnv(
            n, config.scenario, decisions_of(config.env_id), config.forecast_days,
            autoreset_mode=AutoresetMode.SAME_STEP, next_seed=self._training_seed,
        )  # fmt: skip
        super().__init__(n, self.env.single_observation_space, self.env.single_action_space)
        self.env_seconds = 0.0
        self._returns, self._lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        self._terms = np.zeros((n, len(TERM_NAMES)))
        self._actions: np.ndarray | None = None
        self._started = time.time()

    def _training_seed(self, rank: int) -> int:
        return int(self._streams[rank].integers(TRAIN_SEED_LOW, TRAIN_SEED_HIGH))

    # ------------------------------------------------------------------ VecEnv
    def reset(self):
        for rank, seed in enumerate(self._seeds):
            if seed is not None:  # as TrainingSeeds.reset(seed=s): the member's stream restarts from s
                self._streams[rank] = np.random.default_rng(seed)
        seeds = [self._training_seed(rank) for rank in range(self.num_envs)]
        started = time.perf_counter()
        obs, infos = self.env.reset(seed=seeds)
        self.env_seconds += time.perf_counter() - started
        self._reset_seeds()
        self._returns[:], self._lengths[:], self._terms[:] = 0.0, 0, 0.0
        self.reset_infos = [{"episode_seed": int(s)} for s in infos["episode_seed"]]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        started = time.perf_counter()
        obs, rewards, terminated, truncated, infos = self.env.step(self._actions)
        self.env_seconds += time.perf_counter() - started
        terms = infos["reward_terms"]
        self._returns += rewards
        self._lengths += 1
        self._terms += np.stack([terms[name] for name in TERM_NAMES], axis=1)
        dones = terminated | truncated
        out = [{} for _ in range(self.num_envs)]
        for rank in np.flatnonzero(dones):
            kpis = {name: float(v[rank]) for name, v in infos["episode_kpis"].items() if not name.startswith("_")}
            out[rank] = {
                "terminal_observation": infos["final_obs"][rank],
                "TimeLimit.truncated": bool(truncated[rank] and not terminated[rank]),
                "episode": {"r": round(float(self._returns[rank]), 6), "l": int(self._lengths[rank]),
                            "t": round(time.time() - self._started, 6)},
                "episode_terms": dict(zip(TERM_NAMES, self._terms[rank].tolist(), strict=True)),
                "episode_kpis": kpis,
                "episode_seed": int(infos["episode_seed"][rank]),
            }  # fmt: skip
            self._returns[rank], self._lengths[rank], self._terms[rank] = 0.0, 0, 0.0
        return obs, rewards.astype(np.float32), dones, out

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices=None) -> list:
        if attr_name == "env_seconds":  # the batch's time, spread over its members (they sum back to it)
            return [self.env_seconds / self.num_envs] * len(self._indices(indices))
        if attr_name == "action_masks":
            return [self.action_masks] * len(self._indices(indices))
        value = getattr(self.env.single, attr_name)  # an attribute every member shares (scenario, layout, ...)
        return [value] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        raise AttributeError(f"BatchedVecEnv members have no settable attribute {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        if method_name != "action_masks":
            raise AttributeError(f"BatchedVecEnv has no method {method_name!r} per member; allowed: 'action_masks'")
        masks = self.action_masks()
        return [masks[i] for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def action_masks(self) -> np.ndarray:
        return self.env.action_masks()

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)
