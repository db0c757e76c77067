"""The day transition: a pure function of (state, action, realization) returning the next state and the terms.

One call of :func:`transition` plays one day in the documented order:

1. (already done when the day was entered) transfers and supplier shipments due
   today are on hand;
2. lots are processed in slot order ``(region, SKU, lot)``: a lot ships *whole* if
   its lane is open today and its warehouse still holds enough of the SKU, else it
   is lost (as is a rejected lot);
3. transfers are processed in slot order ``(lane, SKU)``: a quantity is sent
   whole if the lane is open, the origin still holds it, and the destination's
   inventory position stays within capacity. The position is the destination's
   on hand after step 2 plus all transfer units in transit to it (including
   those sent earlier today); today's outbound transfers do not free capacity,
   which makes the rule independent of the processing order;
4. end-of-day on hand is scored (Eq.5), then the next day's arrivals are put on hand.

The terms are priced by :mod:`envs.reward`. The input state is never modified (the new state
shares the arrays that did not change), so a caller may keep, copy or branch from any state.
The MILP baselines encode exactly these rules; ``tests/test_contract.py`` proves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.network import Network
from envs.realization import Trace
from envs.reward import imbalance, transfer_revenue

KPI_COUNTERS = (
    "units_demanded",
    "units_shipped",
    "units_on_time",
    "units_abnormal",
    "delivery_days",  # sum over shipped units of transit days
    "transport_cost",  # Eq.1 total, USD
    "units_transferred",
)


@dataclass
class State:
    """Episode state; treat its arrays as values (the transition makes new ones).

    Shapes: ``W`` warehouses, ``K`` SKUs, ``T`` days, ``H`` max transfer lead.
    """

    day: int  # index of the day about to be played, 0..T (T = episode over)
    on_hand: np.ndarray  # [W, K] int, units on hand now (today's arrivals included)
    inbound: np.ndarray  # [T + H + 1, W, K] int, transfer units arriving at the start of each absolute day
    en_route: np.ndarray  # [W] int, transfer units on their way to each warehouse (inbound not yet on hand)
    supplied: int = 0  # units received from suppliers so far (for the conservation check)
    shipped: int = 0  # units delivered to customers so far
    kpi: dict[str, float] = field(default_factory=dict)  # KPI_COUNTERS, summed over the days played
    arrived_through: int = 0  # last day whose arrivals are on hand (T - 1 once the episode is over)

    def in_transit(self) -> int:
        """Transfer units sent and not yet on hand (at episode end: those that would arrive after it)."""
        return int(self.en_route.sum())

    def position(self, on_hand: np.ndarray | None = None) -> np.ndarray:
        """Inventory position per warehouse ``[W]``: on hand (the state's, or ``on_hand`` ``[W, K]``) plus en route."""
        return (self.on_hand if on_hand is None else on_hand).sum(axis=1) + self.en_route

    def copy(self) -> State:
        return State(
            self.day,
            self.on_hand.copy(),
            self.inbound.copy(),
            self.en_route.copy(),
            self.supplied,
            self.shipped,
            dict(self.kpi),
            self.arrived_through,
        )


def initial_state(net: Network, trace: Trace) -> State:
    """Day 0 with its arrivals on hand."""
    inbound = np.zeros((net.T + net.tl_max_lead + 1, net.W, net.K), dtype=np.int64)
    state = State(
        0, net.initial_stock.copy(), inbound, np.zeros(net.W, dtype=np.int64), kpi=dict.fromkeys(KPI_COUNTERS, 0.0)
    )
    return _receive(state, trace)


def _receive(state: State, trace: Trace) -> State:
    """The state with the current day's transfer and supplier arrivals on hand."""
    t, supply, arriving = state.day, trace.realization.supply[state.day], state.inbound[state.day]
    on_hand = state.on_hand + arriving + supply
    en_route = state.en_route - arriving.sum(axis=1)
    return State(t, on_hand, state.inbound, en_route, state.supplied + int(supply.sum()), state.shipped, state.kpi, t)


def lot_masks(net: Network, trace: Trace, state: State) -> np.ndarray:
    """Feasible choices per lot slot ``[n_lots, 1 + max lanes]`` bool, each judged alone at start of day.

    Reject (column 0) is always allowed; a lane is allowed if it is open today and its
    warehouse holds at least the lot's size; an empty lot allows only reject.
    """
    size = trace.lots[state.day][:, None]
    stock = state.on_hand.reshape(-1)[net.lot_stock_index]
    ok = net.lot_valid & trace.realization.delivery_open[state.day][net.lot_lane_c] & (stock >= size) & (size > 0)
    ok[:, 0] = True
    return ok


def transfer_masks(net: Network, trace: Trace, state: State, on_hand: np.ndarray | None = None) -> np.ndarray:
    """Feasible levels per transfer slot ``[L*K, max levels]`` bool, each judged alone.

    Level 0 (send nothing) is always allowed; a quantity ``q > 0`` needs the lane open
    today, ``q`` units of the SKU at the origin, and room for ``q`` in the destination's
    inventory position. Stock is judged on ``on_hand`` ``[W, K]``: by default the state's
    on hand at the start of the day (all lots rejected); pass the stock left after the
    day's lots when they are fixed by rule (``CrossBorderTransfer-v0``) to get an exact mask.
    """
    if net.L == 0:
        return np.ones((0, 1), dtype=bool)
    t = state.day
    on_hand = state.on_hand if on_hand is None else on_hand
    qty = net.transfer_qty_table  # [L*K, V]
    slot_lane = net.transfer_slot_lane
    origin_stock = on_hand[net.tl_origin[slot_lane], net.transfer_slot_sku]
    position = state.position(on_hand)
    room = (net.capacity - position)[net.tl_destination[slot_lane]]
    ok = (
        trace.realization.transfer_open[t][slot_lane][:, None]
        & (qty <= origin_stock[:, None])
        & (qty <= room[:, None])
        & net.transfer_level_valid
    )
    ok[:, 0] = True
    return ok


def ship_lots(
    net: Network, trace: Trace, day: int, on_hand: np.ndarray, lot_choice: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 of the day: ``(sent, lane)``, both ``[R*K*J]`` int.

    ``sent`` is the units each lot slot ships (its whole size or 0), ``lane`` the delivery
    lane it names (0 where rejected; only meaningful where ``sent > 0``). Lots are played in
    slot order against ``on_hand`` ``[W, K]`` at the start of the day.
    """
    lots = trace.lots[day]
    k_of = net.lot_sku
    lane = net.lot_lane_table[np.arange(net.n_lots), lot_choice]  # -1 = reject
    wanted = (lane >= 0) & (lots > 0)
    lane_c = np.where(wanted, lane, 0)
    wanted &= trace.realization.delivery_open[day][lane_c]
    wh = net.dl_warehouse[lane_c]

    # Fast path: if no (warehouse, SKU) is asked for more than it holds, every wanted lot ships;
    # otherwise play the lots of the over-asked pairs one by one, in slot order.
    flat = wh * net.K + k_of
    asked = np.bincount(flat[wanted], weights=lots[wanted], minlength=net.W * net.K).reshape(net.W, net.K)
    ships = wanted.copy()
    short = asked > on_hand
    if short.any():
        remaining = on_hand.reshape(-1).tolist()
        for slot in np.flatnonzero(wanted & short[wh, k_of]).tolist():
            i, n = int(flat[slot]), int(lots[slot])
            if remaining[i] >= n:
                remaining[i] -= n
            else:
                ships[slot] = False
    return np.where(ships, lots, 0), lane_c


def shipped_out(net: Network, sent: np.ndarray, lane: np.ndarray) -> np.ndarray:
    """Units leaving each ``(warehouse, SKU)`` ``[W, K]`` int for the lots ``ship_lots`` sent."""
    out = np.bincount(net.dl_warehouse[lane] * net.K + net.lot_sku, weights=sent, minlength=net.W * net.K)
    return out.astype(np.int64).reshape(net.W, net.K)


def send_transfers(
    net: Network, trace: Trace, state: State, on_hand: np.ndarray, transfer_choice: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 3 of the day: the transfers executed, as ``(lane, sku, quantity)`` arrays in slot order.

    ``on_hand`` ``[W, K]`` is the stock after step 2; capacity is judged on it plus everything
    inbound (see the module docstring).
    """
    empty = np.zeros(0, dtype=np.int64)
    if net.L == 0:
        return empty, empty, empty
    t, real = state.day, trace.realization
    qty = net.transfer_qty_table[np.arange(net.L * net.K), transfer_choice]
    # a closed lane sends nothing and leaves stock and positions as they are, so drop its slots first
    slots = np.flatnonzero((qty > 0) & real.transfer_open[t][net.transfer_slot_lane])
    if slots.size == 0:
        return empty, empty, empty
    lane, sku, q = net.transfer_slot_lane[slots], net.transfer_slot_sku[slots], qty[slots]
    origin, dest = net.tl_origin[lane], net.tl_destination[lane]
    position = state.position(on_hand)
    need = np.bincount(origin * net.K + sku, weights=q, minlength=net.W * net.K).reshape(net.W, net.K)
    incoming = np.bincount(dest, weights=q, minlength=net.W)
    if np.all(need <= on_hand) and np.all(position + incoming <= net.capacity):
        return lane, sku, q  # fast path: every slot passes its checks in any order
    sends = np.zeros(slots.size, dtype=bool)
    stock = on_hand.tolist()
    pos, cap = position.tolist(), net.capacity.tolist()
    for i, (o, d, k, n) in enumerate(zip(origin.tolist(), dest.tolist(), sku.tolist(), q.tolist(), strict=True)):
        if stock[o][k] < n or pos[d] + n > cap[d]:
            continue
        stock[o][k] -= n
        pos[d] += n
        sends[i] = True
    return lane[sends], sku[sends], q[sends]


def transition(
    net: Network, trace: Trace, state: State, lot_choice: np.ndarray, transfer_choice: np.ndarray
) -> tuple[State, dict[str, float]]:
    """Play day ``state.day``: ``(next state, reward terms)`` (positive magnitudes but Eq.2, USD).

    ``lot_choice``: ``[R*K*J]`` int, 0 = reject, ``i`` = the region's ``i``-th lane.
    ``transfer_choice``: ``[L*K]`` int, level index per transfer slot.
    (:class:`envs.layout.ActionLayout` turns an env action into these.)
    """
    t, real = state.day, trace.realization
    lots = trace.lots[t]
    sent, lane_c = ship_lots(net, trace, t, state.on_hand, lot_choice)
    on_hand = state.on_hand - shipped_out(net, sent, lane_c)
    eq1 = float(np.dot(sent, trace.unit_route_cost[t][lane_c]))
    eq4 = float(np.dot(sent, trace.unit_delay_penalty[t][lane_c]))
    eq2 = float(np.dot(sent, net.lot_unit_profit))
    lost = float(np.dot(lots - sent, net.lot_lost_penalty))

    lane, sku, q = send_transfers(net, trace, state, on_hand, transfer_choice)
    inbound, en_route = state.inbound, state.en_route
    if q.size:
        dest = net.tl_destination[lane]
        on_hand = on_hand.copy()
        np.subtract.at(on_hand, (net.tl_origin[lane], sku), q)
        inbound = inbound.copy()
        np.add.at(inbound, (t + real.transfer_lead[t, lane], dest, sku), q)
        en_route = en_route + np.bincount(dest, weights=q, minlength=net.W).astype(np.int64)
        eq2 += float(np.sum(transfer_revenue(net, lane, q)))

    eq5 = imbalance(net, on_hand)

    tau = real.transit_days[t][lane_c]
    n_sent = int(sent.sum())
    kpi = dict(state.kpi)
    kpi["units_demanded"] += int(lots.sum())
    kpi["units_shipped"] += n_sent
    kpi["units_on_time"] += int(sent[tau <= net.lot_sla_days].sum())
    kpi["units_abnormal"] += int(sent[real.abnormal_delay[t][lane_c] > 0].sum())
    kpi["delivery_days"] += float(np.dot(sent, tau))
    kpi["transport_cost"] += eq1
    kpi["units_transferred"] += int(q.sum())

    new = State(t + 1, on_hand, inbound, en_route, state.supplied, state.shipped + n_sent, kpi, state.arrived_through)
    if new.day < net.T:
        new = _receive(new, trace)
    terms = {
        "eq1_route_cost": eq1,
        "eq2_allocation_revenue": eq2,
        "eq4_delay_penalty": eq4,
        "eq5_imbalance": eq5,
        "lost_sales": lost,
    }
    return new, terms


KPI_NAMES = (
    "fill_rate",
    "on_time_rate",
    "abnormal_delay_rate",
    "avg_delivery_days",
    "transport_cost_per_unit",
    "units_transferred",
    "units_demanded",
    "units_shipped",
)  # the keys of episode_kpis, in order


def episode_kpis(state: State) -> dict[str, float]:
    """Indicators of Table 3 of the paper, over the episode so far."""
    k = state.kpi
    shipped = max(k["units_shipped"], 1.0)
    return {
        "fill_rate": k["units_shipped"] / max(k["units_demanded"], 1.0),
        "on_time_rate": k["units_on_time"] / shipped,
        "abnormal_delay_rate": k["units_abnormal"] / shipped,
        "avg_delivery_days": k["delivery_days"] / shipped,
        "transport_cost_per_unit": k["transport_cost"] / shipped,
        "units_transferred": k["units_transferred"],
        "units_demanded": k["units_demanded"],
        "units_shipped": k["units_shipped"],
    }
