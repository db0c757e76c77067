"""The Gymnasium environment; its class docstring is its manual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import kernels, reward
from envs.dynamics import State, day_masks, episode_kpis, initial_state, kernel_net
from envs.forecast import demand_cap, expected_demand, expected_supply
from envs.layout import Decisions, action_layout, check_decisions
from envs.realization import Realization, Trace
from envs.render import ansi_frame, rgb_frame, routed_units
from envs.reward import TERM_NAMES
from envs.scenario import Scenario, load_scenario
from envs.view import DayView


class CrossBorderDispatchEnv(gym.Env):
    """
    ## Description

    A cross-border e-commerce platform fulfils customer orders from a hub (e.g. China)
    and overseas warehouses. One step is one day. Each day it routes every lot of
    customer demand to a delivery lane ``(warehouse, region, mode)`` (air, sea, local
    express, ...) or rejects it, and it may move stock between warehouses along
    transfer lanes. The network, costs, SLAs and demand/transit models come from a
    :class:`envs.scenario.Scenario`; everything random in the episode (demand, transit
    times, abnormal delays, lane closures, supplier arrivals) is a
    :class:`envs.realization.Realization` drawn from the reset seed before the first
    step, so the same seed gives every policy, and the hindsight MILP, the same trace.

    Three ids share this class and differ in ``decisions``:

    | id | decisions | routing | transfers |
    |---|---|---|---|
    | ``CrossBorderDispatch-v0`` | ``"both"`` | chosen | chosen |
    | ``CrossBorderRouting-v0`` | ``"routing"`` | chosen | none |
    | ``CrossBorderTransfer-v0`` | ``"transfers"`` | fixed rule: each region's home lane | chosen |

    The day runs in a fixed order (``envs/dynamics.py``): (1) transfers and supplier
    shipments due today are already on hand; (2) lots are processed in slot order, each
    shipped *whole* if its lane is open today and its warehouse still holds enough,
    otherwise lost; (3) transfers are processed in slot order, each sent whole if the
    lane is open, the origin still holds the quantity and the destination's inventory
    position (on hand after (2) plus all inbound transfers) stays within capacity,
    otherwise not sent; (4) end-of-day stock is scored (Eq.5).

    ## Action Space

    One 1-D ``MultiDiscrete`` vector, ``n_lot_slots + n_transfer_slots`` long:

    * lot slots (absent for ``"transfers"``), ordered (region, SKU, lot), lot fastest:
      ``0`` = reject, ``i >= 1`` = the ``i``-th delivery lane of the lot's region
      (``env.unwrapped.lane_labels``). Each day's demand of a (region, SKU) is split into
      ``lots_per_batch`` lots as equal as possible (larger lots first; a lot may be empty);
    * transfer slots (absent for ``"routing"``), ordered (transfer lane, SKU), SKU fastest:
      the index of the quantity level (units) in the lane's ``quantity_levels``.

    Masks: ``env.unwrapped.action_masks()`` (the sb3-contrib convention: a flat bool array of
    length ``sum(nvec)``; through wrappers ``env.get_wrapper_attr("action_masks")()``, which is
    what sb3-contrib calls) and ``info["action_mask"]``. Each choice is judged *alone*: a masked-in
    choice, taken with every other slot at 0, is executed (the lot ships, the transfer is
    sent). Lots are judged on the stock at the start of the day; transfers on the same
    stock with every lot rejected, or, in ``CrossBorderTransfer-v0``, on the stock the
    fixed routing rule leaves. Choices that are fine alone can still collide (two lots on
    the same stock, a lot and a transfer on the same stock, two transfers into the same
    capacity): the later slot then fails. An unmasked infeasible choice is not an error:
    the lot is lost (lost-sale penalty) and the transfer is not sent (no cost). An action
    of the wrong shape, a non-integer entry or an entry outside ``[0, nvec)`` raises
    ``ValueError``. Nothing is clipped.

    Drawing random masked actions: Gymnasium's ``MultiDiscrete.sample(mask=...)`` loops over
    the slots in Python (about 60 steps/s on ``large``, whose vector has 1,200 slots); one
    vectorized draw over a padded ``[slots, max(nvec)]`` table, as in ``bench/bench_env.py``,
    keeps the environment itself the bottleneck (thousands of steps/s).

    ## Observation Space

    A flat ``float32`` ``Box``; ``env.unwrapped.obs_slices`` maps each block to its slice.
    Stock is divided by ``stock_scale`` (the largest warehouse capacity), demand by
    ``demand_scale`` (the largest mean daily demand of a (region, SKU), at least 1).
    It holds only what a dispatcher knows today, never a future realization. The bounds
    are finite and always hold: ``stock_high`` = (total initial stock + twice the
    scheduled supplier units of the horizon) / stock_scale, since a realized supplier
    arrival is at most twice its schedule; ``lot_high`` = the largest demand cap
    ``floor(3 * mean + 20)`` / demand_scale, since realized demand is truncated there
    (:func:`envs.realization.demand_cap`). Both are attributes of ``env.unwrapped``.

    | block | shape | meaning | min | max |
    |---|---|---|---|---|
    | ``on_hand`` | W*K | on hand after today's arrivals / stock_scale, warehouse-major | 0 | stock_high |
    | ``pipeline`` | W*K*H | transfers arriving in 1..H days / stock_scale (H = max lead), day last | 0 | stock_high |
    | ``lots`` | R*K*J | today's lot sizes / demand_scale, in lot-slot order | 0 | lot_high |
    | ``delivery_open`` | D | 1 if the delivery lane is open today | 0 | 1 |
    | ``transfer_open`` | L | 1 if the transfer lane is open today | 0 | 1 |
    | ``day`` | 1 | day index / horizon | 0 | 1 |
    | ``weekday`` | 7 | one-hot day of week (day index mod 7) | 0 | 1 |
    | ``forecast`` | F*R*K | scenario's mean demand of the next F days / demand_scale (0 past the horizon) | 0 | 1 |

    ## Rewards

    Per day, in USD, ``reward = eq2 - eq1 - eq4 - eq5 - lost`` exactly, each term in
    ``info["reward_terms"]`` (this list is written from ``envs/reward.py``, where the terms are defined):

    {REWARD_TERMS}

    Transit cost and delay are charged on the day of shipping. Stock still in transit
    when the horizon ends has no terminal value.

    ## Starting State

    Warehouses hold the scenario's ``initial_stock`` plus the supplier shipments and
    nothing else due on day 0; the realization is ``scenario.sample(seed)`` for
    ``reset(seed=seed)``; with ``seed=None`` a seed is drawn from ``self.np_random``.
    ``reset(options={"realization": r})`` plays a given :class:`Realization` instead
    (checked by :meth:`Realization.check`; a bad one raises ``ValueError``).
    The episode's realization is ``env.unwrapped.realization``.

    ## Episode End

    * Termination: after the last day of the scenario's ``horizon_days`` (the problem's
      own end, so it is termination, not truncation). The final ``info`` holds
      ``episode_kpis``: ``fill_rate`` (units shipped / units demanded), ``on_time_rate``
      and ``abnormal_delay_rate`` (shares of units shipped), ``avg_delivery_days`` (mean
      realized transit days per unit shipped), ``transport_cost_per_unit`` (Eq.1 per unit
      shipped, USD), ``units_transferred``, ``units_demanded``, ``units_shipped``. After
      termination ``step`` raises ``RuntimeError`` until ``reset``.
    * Truncation: never by the env itself (no ``max_episode_steps`` is registered because
      the horizon is scenario data).

    ## Arguments

    | argument | type | default | meaning |
    |---|---|---|---|
    | ``scenario`` | preset name, YAML/JSON path or ``Scenario`` | ``"table1"`` | the network |
    | ``decisions`` | ``"both"``, ``"routing"``, ``"transfers"`` | set by the id | which choices the action holds |
    | ``forecast_days`` | int in 0..365 | 3 | days of demand forecast in the observation |
    | ``render_mode`` | ``None``, ``"ansi"``, ``"rgb_array"`` | ``None`` | what ``render()`` returns (below) |

    ## Rendering

    ``render()`` draws the current day (:mod:`envs.render`). ``"ansi"``: a text table (on hand / target
    per warehouse and SKU, units in transit, today's demand per region and SKU, closed lanes, the last
    day's reward terms). ``"rgb_array"``: a ``uint8 [320, 768, 3]`` picture: on-hand units per warehouse
    and SKU with their Eq.5 targets, and the units the last action shipped per delivery lane and asked to send per
    transfer lane. With ``render_mode=None`` nothing is recorded and ``render()`` returns ``None``.

    ```python
    import gymnasium as gym
    import numpy as np
    import envs  # registers the ids
    env = gym.make("CrossBorderDispatch-v0", scenario="table1")
    obs, info = env.reset(seed=0)
    nvec = env.action_space.nvec  # one flat mask, split per slot for MultiDiscrete.sample
    mask = tuple(np.split(info["action_mask"].astype(np.int8), np.cumsum(nvec)[:-1]))
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample(mask=mask))
    ```

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}

    def __init__(
        self,
        scenario: str | Path | Scenario = "table1",
        decisions: Decisions = "both",
        forecast_days: int = 3,
        render_mode: str | None = None,
    ) -> None:
        check_decisions(decisions)
        if isinstance(forecast_days, bool) or not isinstance(forecast_days, int) or not 0 <= forecast_days <= 365:
            raise ValueError(f"forecast_days={forecast_days!r} must be an integer in 0..365 (days)")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; allowed: None, 'ansi', 'rgb_array'")
        self.render_mode = render_mode
        self.last_terms: dict[str, float] | None = None  # the last step's reward terms (for render)
        self.last_routed: tuple[np.ndarray, np.ndarray] | None = None  # units per lane of the last action
        self.scenario = load_scenario(scenario)
        self.decisions = decisions
        self.forecast_days = forecast_days
        self.net = net = self.scenario.network
        self.layout = action_layout(net, decisions)
        if self.layout.size == 0:
            raise ValueError(
                f"decisions={decisions!r} leaves no action: scenario {self.scenario.name!r} has no transfer lanes"
            )
        self.action_space = spaces.MultiDiscrete(self.layout.nvec)

        H, F = net.tl_max_lead, forecast_days
        self.stock_scale = float(max(net.capacity.max(), 1))
        mean = expected_demand(self.scenario)
        self.demand_scale = float(max(mean.max(), 1.0))
        # Finite bounds (see the docstring): no (warehouse, SKU) ever holds or awaits more units than
        # entered the network (initial stock plus supplier units, each arrival at most twice its
        # schedule), and no lot exceeds the demand cap of the realization.
        max_units = int(net.initial_stock.sum()) + 2 * int(expected_supply(self.scenario).sum())
        self.stock_high = float(np.float32(max(max_units, 1) / self.stock_scale))
        self.lot_high = float(np.float32(int(demand_cap(mean).max(initial=0)) / self.demand_scale))
        self._forecast = np.zeros((net.T + F + 1, net.R * net.K), dtype=np.float32)
        self._forecast[: net.T] = (mean / self.demand_scale).reshape(net.T, -1)
        sizes = {
            "on_hand": net.W * net.K,
            "pipeline": net.W * net.K * H,
            "lots": net.n_lots,
            "delivery_open": net.D,
            "transfer_open": net.L,
            "day": 1,
            "weekday": 7,
            "forecast": F * net.R * net.K,
        }
        self.obs_slices: dict[str, slice] = {}
        start = 0
        for name, n in sizes.items():
            self.obs_slices[name] = slice(start, start + n)
            start += n
        high = np.ones(start, dtype=np.float32)
        high[self.obs_slices["on_hand"]] = self.stock_high
        high[self.obs_slices["pipeline"]] = self.stock_high
        high[self.obs_slices["lots"]] = self.lot_high
        self.observation_space = spaces.Box(low=np.zeros(start, dtype=np.float32), high=high, dtype=np.float32)

        self.lane_labels = [f"{ln.warehouse}->{ln.region} by {ln.mode}" for ln in self.scenario.delivery_lanes]
        self.realization: Realization | None = None
        self.episode_seed: int | None = None
        self.state: State | None = None
        self.trace: Trace | None = None  # the realization compiled against the network (lots, unit costs)
        # the masks of one state, computed at most once: "lots" [R*K*J, 1 + max lanes], "transfers"
        # [L*K, max levels], "flat" [sum(nvec)]
        self._masks: dict[str, np.ndarray] = {}
        self._mask_state: State | None = None
        # what the compiled step writes besides the new state and observation (read at once, overwritten by the
        # next step): the day's terms [1, 5] and the new state's masks, as tables and flat
        self._terms = np.zeros((1, len(TERM_NAMES)))
        self._mask_buffers = (
            np.zeros((1, *net.lot_lane_table.shape), dtype=np.bool_),
            np.zeros((1, net.L * net.K, net.transfer_qty_table.shape[1]), dtype=np.bool_),
            np.zeros((1, int(self.layout.nvec.sum())), dtype=np.bool_),
        )
        self._obs_shape = (1, self.observation_space.shape[0])
        # the episode's trace as the compiled step reads it (the arrays of self.trace.batch, copied in at reset)
        T, D, L = net.T, net.D, net.L
        self._trace_buffers = (
            np.zeros((1, T, net.n_lots), np.int64), np.zeros((1, T, D)), np.zeros((1, T, D)),
            np.zeros((1, T, D), np.int64), np.zeros((1, T, D), np.int64), np.zeros((1, T, D), np.bool_),
            np.zeros((1, T, L), np.bool_), np.ones((1, T, L), np.int64), np.zeros((1, T, net.W, net.K), np.int64),
        )  # fmt: skip
        self._context = self._make_context()

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
            raise ValueError(f"seed={seed!r} must be an integer >= 0 or None")
        super().reset(seed=seed)
        options = options or {}
        real = options.get("realization")
        if real is not None:
            if not isinstance(real, Realization):
                raise ValueError(f"options['realization'] must be a Realization, got {type(real).__name__}")
            real.check(self.scenario)
            self.episode_seed = real.seed
        else:
            self.episode_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**63 - 1))
            real = self.scenario.sample(self.episode_seed)
        self.realization = real
        self.trace = Trace.compile(self.net, real)
        self.state = initial_state(self.net, self.trace)
        self.last_terms = self.last_routed = None
        for target, source in zip(self._trace_buffers, self.trace.batch, strict=True):
            target[...] = source
        obs = self._compiled(self.state, False, _NO_LOTS, _NO_TRANSFERS)
        return obs, {"action_mask": self.action_masks(), "day": 0}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if self.state.day >= self.net.T:
            raise RuntimeError("the episode has ended; call reset()")
        action = self.layout.check(action)
        day = self.state.day
        if self.render_mode is not None:  # recorded only when rendering: a plain step stays one kernel call
            self.last_routed = routed_units(self, action)
        terms = self._advance(action)
        if self.render_mode is not None:
            self.last_terms = terms
        reward = reward_of(terms)
        terminated = day + 1 >= self.net.T
        info = {"reward_terms": terms, "day": day, "action_mask": self._masks["flat"].copy()}
        if terminated:
            info["episode_kpis"] = episode_kpis(self.state)
        return self._observed, reward, terminated, False, info

    def render(self):
        """The current day as text (``"ansi"``) or a picture (``"rgb_array"``); ``None`` without a render mode."""
        if self.render_mode is None:
            return None
        if self.state is None:
            raise RuntimeError("call reset() before render()")
        return ansi_frame(self) if self.render_mode == "ansi" else rgb_frame(self)

    def action_masks(self) -> np.ndarray:
        """Flat bool mask of length ``sum(nvec)``: True where a choice is feasible alone today."""
        return self._mask("flat").copy()

    def view(self) -> DayView:
        """What a dispatcher knows now (today's state, orders, lane status, pipeline); no future realization."""
        if self.state is None:
            raise RuntimeError("call reset() before view()")
        net, st, t = self.net, self.state, self.state.day
        if t >= net.T:
            raise RuntimeError("the episode has ended; call reset()")
        return DayView(
            day=t,
            on_hand=st.on_hand.copy(),
            pipeline=st.inbound[t + 1 : t + 1 + net.tl_max_lead].copy(),
            lots=self.trace.lots[t].copy(),
            delivery_open=self.realization.delivery_open[t].copy(),
            transfer_open=self.realization.transfer_open[t].copy(),
            lot_mask=self._mask("lots").copy(),
            transfer_mask=self._mask("transfers").copy(),
            layout=self.layout,
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_context"] = None  # a compiled structure (not picklable): rebuilt on the buffers it shares
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._context = self._make_context()

    # ------------------------------------------------------------ internals
    def _make_context(self) -> kernels.Context:
        net, layout = self.net, self.layout
        return kernels.context(kernel_net(net), self._trace_buffers, self._forecast, self.forecast_days,
                               self.stock_scale, self.demand_scale, net.lot_home_choice, layout.routes,
                               *layout.flat_positions, self._terms, *self._mask_buffers)  # fmt: skip

    def _advance(self, action: np.ndarray) -> dict[str, float]:
        """Play the day (the pure :func:`envs.dynamics.transition` on a copy of the state) and compute the new
        state's masks and observation, all in one compiled call (:func:`envs.kernels.advance_single`)."""
        new = self.state.copy()
        lots, transfers = self.layout.split(action)
        self._observed = self._compiled(new, True, np.ascontiguousarray(lots)[None],
                                        np.ascontiguousarray(transfers)[None])  # fmt: skip
        self.state = new
        return dict(zip(TERM_NAMES, self._terms[0].tolist(), strict=True))

    def _compiled(self, state: State, play: bool, lots: np.ndarray, transfers: np.ndarray) -> np.ndarray:
        """:func:`envs.kernels.advance_single` on ``state`` (in place): with ``play`` the day of ``lots[1, S]``/
        ``transfers[1, LK]``; then the masks of ``state`` (cached for it) and its observation (returned)."""
        obs = np.empty(self._obs_shape, dtype=np.float32)
        kernels.advance_single(self._context, play, *state.arrays, lots, transfers, obs)
        lot_mask, transfer_mask, flat = self._mask_buffers
        self._masks, self._mask_state = {"lots": lot_mask[0], "transfers": transfer_mask[0], "flat": flat[0]}, state
        return obs[0]

    def _mask(self, name: str) -> np.ndarray:
        """The current state's ``"lots"``, ``"transfers"`` or ``"flat"`` mask, computed once per state (do not
        mutate). States are values (a step makes a new one), so the cache follows the state object."""
        st = self.state
        if st is None:
            raise RuntimeError("call reset() before asking for masks")
        if self._mask_state is not st:
            lots, transfers = day_masks(self.net, self.trace, st, self.layout.routes)
            layout = self.layout
            flat = layout.flat_mask(lots if layout.routes else None, transfers if layout.transfers else None)
            self._masks, self._mask_state = {"lots": lots, "transfers": transfers, "flat": flat}, st
        return self._masks[name]


reward_of = reward.signed_sum  # reward = eq2 - eq1 - eq4 - eq5 - lost of the day's terms
# the choices of a call that plays no day (reset): never read
_NO_LOTS, _NO_TRANSFERS = np.zeros((1, 0), dtype=np.int64), np.zeros((1, 0), dtype=np.int64)
CrossBorderDispatchEnv.__doc__ = CrossBorderDispatchEnv.__doc__.replace("    {REWARD_TERMS}", reward.manual())
