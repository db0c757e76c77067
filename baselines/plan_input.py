"""The data a dispatch MILP plans over (:class:`PlanInput`), from hindsight or from a forecast.

:func:`hindsight_input` reads the episode's whole realization (what only the hindsight MILP may
know); :func:`forecast_input` builds the same fields from what a dispatcher knows today (a
:class:`envs.view.DayView`) and the scenario's expectations (:mod:`envs.forecast`), for the
rolling-horizon policy. Both price a unit shipped with the env's own numbers: the hindsight
input takes them from the episode's :class:`envs.realization.Trace`, the forecast from the
network's expected Eq.1 and Eq.4 per lane (:func:`envs.forecast.expected_lane_costs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.forecast import expected_demand, expected_supply
from envs.lots import split_lots
from envs.network import Network
from envs.realization import Trace
from envs.scenario import Scenario
from envs.view import DayView


@dataclass(frozen=True)
class PlanInput:
    """Exogenous data over the planned days ``0..T'-1`` (day 0 = the first planned day)."""

    start_on_hand: np.ndarray  # [W, K] int, on hand at the start of day 0, its arrivals included
    inbound: np.ndarray  # [N >= T'+1, W, K] int, transfers already in transit, arriving at the start of day t (t >= 1)
    supply: np.ndarray  # [T', W, K] int, supplier units arriving at the start of day t (row 0 is in start_on_hand)
    lots: np.ndarray  # [T', R*K*J] int, lot sizes in slot order
    delivery_open: np.ndarray  # [T', D] bool
    unit_route_cost: np.ndarray  # [T', D] USD/unit shipped that day: Eq.1 (envs.reward.lane_unit_costs)
    unit_delay_penalty: np.ndarray  # [T', D] USD/unit shipped that day: Eq.4
    transfer_open: np.ndarray  # [T', L] bool
    transfer_lead: np.ndarray  # [T', L] int >= 1, days until a transfer sent that day arrives

    @property
    def days(self) -> int:
        return int(self.lots.shape[0])


def hindsight_input(net: Network, trace: Trace) -> PlanInput:
    """The whole realization as model data: what the hindsight MILP knows."""
    real = trace.realization
    supply = real.supply.copy()
    return PlanInput(
        start_on_hand=(net.initial_stock + supply[0]).astype(np.int64),
        inbound=np.zeros((net.T + net.tl_max_lead + 1, net.W, net.K), dtype=np.int64),
        supply=supply,
        lots=trace.lots.copy(),
        delivery_open=real.delivery_open.copy(),
        unit_route_cost=trace.unit_route_cost.copy(),
        unit_delay_penalty=trace.unit_delay_penalty.copy(),
        transfer_open=real.transfer_open.copy(),
        transfer_lead=real.transfer_lead.copy(),
    )


def forecast_input(scenario: Scenario, view: DayView, window: int) -> PlanInput:
    """Model data for days ``view.day .. view.day + window - 1`` (clipped to the horizon) from ``view`` + forecast.

    Today: the view (on hand, pipeline, today's lots, today's lane status). Later days: mean demand
    rounded and split into lots like the env, lanes open, scheduled supplier units. Transit times
    and transfer leads are unknown to a policy, today's too: every day is priced with the expected
    Eq.1 and Eq.4 per unit and planned with the expected lead (rounded, at least one day).
    """
    net = scenario.network
    t0 = view.day
    n = min(window, net.T - t0)
    H = net.tl_max_lead
    inbound = np.zeros((n + H + 1, net.W, net.K), dtype=np.int64)
    inbound[1 : 1 + len(view.pipeline)] = view.pipeline
    supply = expected_supply(scenario)[t0 : t0 + n].copy()
    supply[0] = 0  # today's supply is already in view.on_hand
    mean = expected_demand(scenario)[t0 : t0 + n]  # [n, R, K]
    lots = split_lots(np.floor(mean + 0.5).astype(np.int64), net.J).reshape(n, -1)
    lots[0] = view.lots
    delivery_open = np.ones((n, net.D), dtype=bool)
    delivery_open[0] = view.delivery_open
    transfer_open = np.ones((n, net.L), dtype=bool)
    transfer_open[0] = view.transfer_open
    lead = np.maximum(np.floor(net.tl_expected_lead + 0.5), 1).astype(np.int64)
    return PlanInput(
        start_on_hand=view.on_hand.astype(np.int64),
        inbound=inbound,
        supply=supply,
        lots=lots,
        delivery_open=delivery_open,
        unit_route_cost=np.tile(net.dl_expected_route_cost, (n, 1)),
        unit_delay_penalty=np.tile(net.dl_expected_delay_penalty, (n, 1)),
        transfer_open=transfer_open,
        transfer_lead=np.tile(lead, (n, 1)),
    )
