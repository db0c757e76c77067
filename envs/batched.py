"""The batched environment: ``B`` independent episodes stepped at once by the same kernels as the single env.

``gym.make_vec("CrossBorderDispatch-v0", num_envs=B, scenario=...)`` (any of the three ids; the
``vector_entry_point`` mode is the default for them) returns a :class:`BatchedDispatchEnv`. Member
``i`` of a batch is the single env, step for step: reset with seed ``s_i`` it plays the realization
``scenario.sample(s_i)`` and returns the observations, rewards, reward terms, masks and KPIs that
``gym.make(id).reset(seed=s_i)`` returns for the same actions, because both call
:mod:`envs.kernels` (``tests/test_batched.py`` checks it over thousands of steps with autoresets).

Gymnasium 1.x vector semantics:

* ``reset(seed=s)`` seeds member ``i`` with ``s + i`` (a list gives each member its seed; ``None``
  draws them), exactly as ``SyncVectorEnv`` over single envs does; every later episode of member ``i``
  draws its seed from the member's own ``np_random``, as a single env's ``reset()`` without a seed;
* autoreset (``metadata["autoreset_mode"]``, ``NEXT_STEP`` by default, or ``SAME_STEP``): with
  ``NEXT_STEP`` the step after a member's last day resets it, ignores its action and returns its first
  observation with reward 0; with ``SAME_STEP`` the last day's step already returns the next episode's
  first observation, the last one in ``infos["final_obs"]``;
* ``threads`` (default 1): members cut into this many runs stepped in parallel by numba's threads (at most
  ``numba.get_num_threads()`` at once); the results are the same for any value. More than one pays only with
  large batches and idle cores (``table1``, ``B = 1024``, two idle cores: 1.6-2x the steps/s of one thread); on a
  loaded machine a thread waiting for a core stalls every step;
* ``action_masks()`` ``[B, sum(nvec)]`` bool, also ``infos["action_mask"]``; ``infos["reward_terms"]``
  (each term ``[B]``), ``infos["episode_kpis"]`` for members whose episode ended (masked by
  ``infos["_episode_kpis"]``), ``infos["episode_seed"]`` ``[B]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs import kernels, sampler
from envs.dispatch_env import CrossBorderDispatchEnv
from envs.dynamics import KPI_COUNTERS, KPI_NAMES, empty_state, kernel_net
from envs.layout import Decisions
from envs.realization import Realization
from envs.reward import TERM_NAMES, signed_sum
from envs.scenario import Scenario


class BatchedDispatchEnv(VectorEnv):
    """``num_envs`` episodes of one scenario and decision mode; see the module docstring."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int,
        scenario: str | Path | Scenario = "table1",
        decisions: Decisions = "both",
        forecast_days: int = 3,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        next_seed: Callable[[int], int] | None = None,
        threads: int = 1,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be an integer >= 1")
        if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
            raise ValueError(f"threads={threads!r} must be an integer >= 1")
        self.threads = int(threads)  # members cut into this many runs, stepped in parallel when > 1
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode='Disabled' is not supported; allowed: 'NextStep', 'SameStep'")
        if render_mode is not None:  # a picture of B episodes is B pictures: render a single env instead
            raise ValueError(f"render_mode={render_mode!r} is not supported by the batched env; allowed: None")
        # the single env of the same arguments: its checks, spaces, scales and forecast table are the batch's
        self.single = single = CrossBorderDispatchEnv(scenario, decisions, forecast_days, render_mode)
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.render_mode = render_mode
        self.num_envs = B = int(num_envs)
        self.scenario, self.net, self.layout = single.scenario, single.net, single.layout
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(single.observation_space, B)
        self.action_space = batch_space(single.action_space, B)
        net = self.net
        T, W, K, D, L, S = net.T, net.W, net.K, net.D, net.L, net.n_lots
        # realizations, one per member (rewritten at each of its resets): its demand, and the kernels' trace
        # arguments (lots, Eq.1, Eq.4, transit days, abnormal delay, delivery open, transfer open, lead, supply)
        self._demand = np.zeros((B, T, net.R, K), np.int64)
        self._trace = (
            np.zeros((B, T, S), np.int64), np.zeros((B, T, D)), np.zeros((B, T, D)), np.zeros((B, T, D), np.int64),
            np.zeros((B, T, D), np.int64), np.zeros((B, T, D), np.bool_), np.zeros((B, T, L), np.bool_),
            np.ones((B, T, L), np.int64), np.zeros((B, T, W, K), np.int64),
        )  # fmt: skip
        self._state = empty_state(net, B)
        self._lot_mask = np.zeros((B, *net.lot_lane_table.shape), np.bool_)
        self._transfer_mask = np.zeros((B, net.L * net.K, net.transfer_qty_table.shape[1]), np.bool_)
        self._flat = np.zeros((B, int(self.layout.nvec.sum())), np.bool_)  # the flat masks of the current state
        self._obs = np.zeros((B, single.observation_space.shape[0]), np.float32)
        self._terms = np.zeros((B, len(TERM_NAMES)))
        self._lot_choice = np.empty((B, S), np.int64)
        self._transfer_choice = np.zeros((B, net.L * net.K), np.int64)
        self._needs_reset = np.zeros(B, np.bool_)  # NEXT_STEP: the member ended last step
        self._idle = np.zeros(B, np.bool_)
        # a member's next episode: its seed, and whether the kernel draws it (else :meth:`_begin` copies it in: a
        # deterministic scenario's one realization)
        self._seed_of = np.zeros(B, np.int64)
        self._drawn = np.full(B, not self.scenario.deterministic)
        self._model = sampler.model(net)
        self.episode_seeds = np.zeros(B, np.int64)
        self._member_rng: list[np.random.Generator] = []
        # the seed of member b's next episode when none is given: ``next_seed(b)`` (training seed streams,
        # agents/vec_env.py), else drawn from the member's own np_random as a single env's reset() draws it
        self._next_seed = next_seed
        self._ready = False

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset every member (Gymnasium's ``reset_mask`` option resets only those marked)."""
        B = self.num_envs
        options = options or {}
        mask = np.asarray(options.get("reset_mask", np.ones(B, np.bool_)), dtype=np.bool_)
        if mask.shape != (B,):
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({B},), got {mask.shape}")
        if not self._ready and not mask.all():
            raise ValueError("the first reset must reset every member (no reset_mask)")
        seeds = self._seeds(seed)
        super().reset(seed=None if seed is None else int(seeds[0]))
        if not self._ready:
            self._member_rng = [seeding.np_random(None)[0] for _ in range(B)]
        for b in np.flatnonzero(mask):
            if seeds[b] is not None:
                self._member_rng[b] = seeding.np_random(int(seeds[b]))[0]
        self._run(self._begin(mask, seeds), self._idle)
        self._needs_reset[mask] = False
        self._ready = True
        return self._obs.copy(), self._infos(self._state[0].copy())

    def step(self, actions):
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        actions = self.layout.check(actions, batch=self.num_envs)
        mode = self.metadata["autoreset_mode"]
        restart = self._needs_reset.copy()  # NEXT_STEP: these members only reset now
        active = ~restart
        day, T = self._state[0], self.net.T
        played = np.where(active, day, 0)  # the day each member plays (0: the reset's first day)
        # one compiled call: the restarting members begin their next episode, the others play their day
        self._run(self._begin(restart), active, *self._split(actions))
        terms = np.where(active[:, None], self._terms, 0.0)
        rewards = signed_sum({name: terms[:, i] for i, name in enumerate(TERM_NAMES)})
        terminated = active & (day >= T)
        kpis = self._episode_kpis(terminated) if terminated.any() else None
        final_obs = None
        if mode == AutoresetMode.SAME_STEP and terminated.any():
            final_obs = self._obs.copy()
            self._run(self._begin(terminated), self._idle)
        self._needs_reset = terminated if mode == AutoresetMode.NEXT_STEP else np.zeros_like(terminated)
        infos = self._infos(played, terms, active, kpis, terminated)
        if final_obs is not None:
            infos["final_obs"], infos["_final_obs"] = final_obs, terminated.copy()
        return self._obs.copy(), rewards, terminated, np.zeros(self.num_envs, np.bool_), infos

    @property
    def days(self) -> np.ndarray:
        """``[B]`` int: the day each member is about to play (T once its episode is over)."""
        return self._state[0].copy()

    def action_masks(self) -> np.ndarray:
        """``[B, sum(nvec)]`` bool: per member, True where a choice is feasible alone today."""
        return self._flat.copy()

    def realization(self, b: int) -> Realization:
        """Member ``b``'s current realization (a copy; its arrays are rewritten at the member's next reset)."""
        t = self._trace
        return Realization(int(self.episode_seeds[b]), self._demand[b].copy(), t[3][b].copy(), t[4][b].copy(),
                           t[5][b].copy(), t[7][b].copy(), t[6][b].copy(), t[8][b].copy())  # fmt: skip

    @property
    def realizations(self) -> list[Realization]:
        """Every member's current realization (copies; see :meth:`realization`)."""
        return [self.realization(b) for b in range(self.num_envs)]

    def close_extras(self, **kwargs) -> None:
        self.single.close()

    # ------------------------------------------------------------ internals
    def _seeds(self, seed) -> list[int | None]:
        B = self.num_envs
        if seed is None:
            return [None] * B
        if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(B)]
        seeds = list(seed)
        if len(seeds) != B or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0 for s in seeds):
            raise ValueError(f"seed must be None, an integer >= 0 or {B} such integers; got {seed!r}")
        return [int(s) for s in seeds]

    def _begin(self, members: np.ndarray, seeds: list[int | None] | None = None) -> np.ndarray:
        """Prepare a new episode for each of ``members`` (``[B]`` bool): its seed (given, or drawn from its own
        stream as a single env's ``reset()`` draws it), drawn by the next :meth:`_run` (or copied in here when the
        kernel cannot draw it). Returns ``members``, the ``reset`` argument of that run."""
        for b in np.flatnonzero(members):
            seed = None if seeds is None else seeds[b]
            if seed is not None:
                episode_seed = int(seed)
            elif self._next_seed is not None:
                episode_seed = int(self._next_seed(int(b)))
            else:
                episode_seed = int(self._member_rng[b].integers(0, 2**63 - 1))
            self.episode_seeds[b] = self._seed_of[b] = episode_seed
            if not self._drawn[b]:  # a deterministic scenario: its one realization, scenario.sample's own path
                real = self.scenario.sample(episode_seed)
                t = self._trace
                for target, x in zip((self._demand, t[3], t[4], t[5], t[7], t[6], t[8]),
                                     (real.demand, real.transit_days, real.abnormal_delay, real.delivery_open,
                                      real.transfer_lead, real.transfer_open, real.supply), strict=True):  # fmt: skip
                    target[b] = x
        return members

    def _run(self, reset: np.ndarray, active: np.ndarray, lots: np.ndarray | None = None,
             transfers: np.ndarray | None = None) -> None:  # fmt: skip
        """One call of :func:`envs.kernels.advance_batch`: members with ``reset`` begin the episode :meth:`_begin`
        prepared, those with ``active`` play the day of ``lots``/``transfers``; every member's masks and
        observation are then current."""
        single, layout = self.single, self.layout
        lot_flat, transfer_flat = layout.flat_positions
        draw = reset & self._drawn
        arguments = (
            kernel_net(self.net), self._model, reset, draw, self._seed_of, self._demand, *self._trace, *self._state,
            self._lot_choice if lots is None else lots, self._transfer_choice if transfers is None else transfers,
            active, self._terms, self.net.lot_home_choice, layout.routes, self._lot_mask, self._transfer_mask,
            lot_flat, transfer_flat, self._flat, single._forecast, single.forecast_days, single.stock_scale,
            single.demand_scale, self._obs,
        )  # fmt: skip
        if self.threads == 1:
            kernels.advance_batch_serial(*arguments)
        else:
            kernels.advance_batch(*arguments, self.threads)

    def _split(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        layout = self.layout
        if layout.routes:
            lots = np.ascontiguousarray(actions[:, : layout.n_lot_slots])
        else:
            self._lot_choice[:] = layout.fixed_lot_choice
            lots = self._lot_choice
        if not layout.transfers:
            return lots, self._transfer_choice
        return lots, np.ascontiguousarray(actions[:, layout.n_lot_slots :])

    def _episode_kpis(self, members: np.ndarray) -> dict[str, np.ndarray]:
        """The single env's ``episode_kpis`` for every member (read where ``members`` is True)."""
        k = {name: self._state[6][:, i] for i, name in enumerate(KPI_COUNTERS)}
        shipped = np.maximum(k["units_shipped"], 1.0)
        out = {
            "fill_rate": k["units_shipped"] / np.maximum(k["units_demanded"], 1.0),
            "on_time_rate": k["units_on_time"] / shipped,
            "abnormal_delay_rate": k["units_abnormal"] / shipped,
            "avg_delivery_days": k["delivery_days"] / shipped,
            "transport_cost_per_unit": k["transport_cost"] / shipped,
            "units_transferred": k["units_transferred"].copy(),
            "units_demanded": k["units_demanded"].copy(),
            "units_shipped": k["units_shipped"].copy(),
        }
        return {name: out[name] for name in KPI_NAMES}

    def _infos(self, day, terms=None, stepped=None, kpis=None, ended=None) -> dict:
        """The single env's infos in Gymnasium's vector form (each key with its ``_key`` member mask)."""
        B = self.num_envs
        everyone = np.ones(B, np.bool_)
        infos: dict[str, Any] = {
            "action_mask": self.action_masks(), "_action_mask": everyone,
            "day": day, "_day": everyone,
            "episode_seed": self.episode_seeds.copy(), "_episode_seed": everyone,
        }  # fmt: skip
        if terms is not None and stepped.any():  # members that only reset this step (NEXT_STEP) have no terms
            infos["reward_terms"] = {name: terms[:, i].copy() for i, name in enumerate(TERM_NAMES)}
            infos["reward_terms"] |= {f"_{name}": stepped.copy() for name in TERM_NAMES}
            infos["_reward_terms"] = stepped.copy()
        if kpis is not None:
            infos["episode_kpis"] = {name: np.where(ended, v, 0.0) for name, v in kpis.items()}
            infos["episode_kpis"] |= {f"_{name}": ended.copy() for name in kpis}
            infos["_episode_kpis"] = ended.copy()
        return infos
