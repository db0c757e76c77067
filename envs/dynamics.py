"""The day transition: a deterministic function of (state, action, realization).

One call of :func:`run_day` plays one day in the documented order:

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

The MILP baselines encode exactly these rules; ``tests/test_contract.py`` proves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.network import Network
from envs.realization import Realization

TERM_NAMES = ("eq1_route_cost", "eq2_allocation_revenue", "eq4_delay_penalty", "eq5_imbalance", "lost_sales")


@dataclass
class State:
    """Mutable episode state. Shapes: ``W`` warehouses, ``K`` SKUs, ``T`` days, ``H`` max transfer lead."""

    day: int  # index of the day about to be played, 0..T (T = episode over)
    on_hand: np.ndarray  # [W, K] int, units on hand now (today's arrivals included)
    inbound: np.ndarray  # [T + H + 1, W, K] int, transfer units arriving at the start of each absolute day
    supplied: int = 0  # units received from suppliers so far (for the conservation check)
    shipped: int = 0  # units delivered to customers so far
    kpi: dict[str, float] = field(default_factory=dict)
    arrived_through: int = 0  # last day whose arrivals are on hand (T - 1 once the episode is over)

    def in_transit(self) -> int:
        """Transfer units sent and not yet on hand (at episode end: those that would arrive after it)."""
        return int(self.inbound[self.arrived_through + 1 :].sum())

    def copy(self) -> State:
        return State(
            self.day,
            self.on_hand.copy(),
            self.inbound.copy(),
            self.supplied,
            self.shipped,
            dict(self.kpi),
            self.arrived_through,
        )


KPI_COUNTERS = (
    "units_demanded",
    "units_shipped",
    "units_on_time",
    "units_abnormal",
    "delivery_days",  # sum over shipped units of transit days
    "transport_cost",  # Eq.1 total, USD
    "units_transferred",
)


def initial_state(net: Network, real: Realization) -> State:
    inbound = np.zeros((net.T + net.tl_max_lead + 1, net.W, net.K), dtype=np.int64)
    state = State(day=0, on_hand=net.initial_stock.copy(), inbound=inbound, kpi=dict.fromkeys(KPI_COUNTERS, 0.0))
    _receive(state, real)
    return state


def _receive(state: State, real: Realization) -> None:
    """Put the current day's transfer and supplier arrivals on hand."""
    t = state.day
    state.on_hand += state.inbound[t] + real.supply[t]
    state.supplied += int(real.supply[t].sum())
    state.arrived_through = t


def lot_masks(net: Network, real: Realization, state: State, lots_today: np.ndarray) -> np.ndarray:
    """Feasible choices per lot slot ``[n_lots, 1 + max lanes]`` bool, each judged alone at start of day.

    Reject (column 0) is always allowed; a lane is allowed if it is open today and its
    warehouse holds at least the lot's size; an empty lot allows only reject.
    """
    size = lots_today.reshape(-1)[:, None]
    stock = state.on_hand.reshape(-1)[net.lot_stock_index]
    ok = net.lot_valid & real.delivery_open[state.day][net.lot_lane_c] & (stock >= size) & (size > 0)
    ok[:, 0] = True
    return ok


def transfer_masks(net: Network, real: Realization, state: State, on_hand: np.ndarray | None = None) -> np.ndarray:
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
    position = on_hand.sum(axis=1) + state.inbound[t + 1 :].sum(axis=(0, 2))
    room = (net.capacity - position)[net.tl_destination[slot_lane]]
    ok = (
        real.transfer_open[t][slot_lane][:, None]
        & (qty <= origin_stock[:, None])
        & (qty <= room[:, None])
        & net.transfer_level_valid
    )
    ok[:, 0] = True
    return ok


def ship_lots(
    net: Network, real: Realization, day: int, on_hand: np.ndarray, lots: np.ndarray, lot_choice: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 of the day, without side effects: ``(sent, lane)``, both ``[R*K*J]`` int.

    ``sent`` is the units each lot slot ships (its whole size or 0), ``lane`` the delivery
    lane it names (0 where rejected; only meaningful where ``sent > 0``). Lots are played in
    slot order against ``on_hand`` ``[W, K]`` at the start of the day.
    """
    k_of = net.lot_sku
    lane = net.lot_lane_table[np.arange(net.n_lots), lot_choice]  # -1 = reject
    wanted = (lane >= 0) & (lots > 0)
    lane_c = np.where(wanted, lane, 0)
    wanted &= real.delivery_open[day][lane_c]
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


def run_day(
    net: Network,
    real: Realization,
    state: State,
    lots: np.ndarray,
    lot_choice: np.ndarray,
    transfer_choice: np.ndarray,
    alpha: float,
    lam: float,
) -> dict[str, float]:
    """Play day ``state.day`` in place and return its reward terms (positive magnitudes but Eq.2).

    ``lots``: ``[R*K*J]`` int, today's lot sizes (``real.lots(J)[t].reshape(-1)``).
    ``lot_choice``: ``[R*K*J]`` int, 0 = reject, ``i`` = the region's ``i``-th lane.
    ``transfer_choice``: ``[L*K]`` int, level index per transfer slot.
    """
    t = state.day
    k_of = net.lot_sku
    sent, lane_c = ship_lots(net, real, t, state.on_hand, lots, lot_choice)
    out = np.bincount(net.dl_warehouse[lane_c] * net.K + k_of, weights=sent, minlength=net.W * net.K)
    state.on_hand -= out.astype(np.int64).reshape(net.W, net.K)

    tau = real.transit_days[t][lane_c]
    late = np.maximum(tau - net.sla_days[net.lot_region], 0)
    eq1 = float(np.dot(sent, net.dl_unit_base_cost[lane_c] + tau * net.dl_cost_per_day[lane_c]))
    eq2 = float(np.dot(sent, net.unit_profit[k_of]))
    eq4 = float(alpha * np.dot(sent, late * late))
    lost = float(np.dot(lots - sent, net.lost_penalty[k_of]))

    eq2 += _run_transfers(net, real, state, transfer_choice)

    eq5 = imbalance(net, state.on_hand, lam)

    kpi = state.kpi
    n_sent = int(sent.sum())
    kpi["units_demanded"] += int(lots.sum())
    kpi["units_shipped"] += n_sent
    kpi["units_on_time"] += int(sent[late == 0].sum())
    kpi["units_abnormal"] += int(sent[real.abnormal_delay[t][lane_c] > 0].sum())
    kpi["delivery_days"] += float(np.dot(sent, tau))
    kpi["transport_cost"] += eq1
    state.shipped += n_sent

    state.day += 1
    if state.day < net.T:
        _receive(state, real)
    return {
        "eq1_route_cost": eq1,
        "eq2_allocation_revenue": eq2,
        "eq4_delay_penalty": eq4,
        "eq5_imbalance": eq5,
        "lost_sales": lost,
    }


def _run_transfers(net: Network, real: Realization, state: State, transfer_choice: np.ndarray) -> float:
    """Execute the day's transfers in slot order; return their Eq.2 contribution (USD, may be negative)."""
    if net.L == 0:
        return 0.0
    t = state.day
    qty = net.transfer_qty_table[np.arange(net.L * net.K), transfer_choice]
    # a closed lane sends nothing and leaves stock and positions as they are, so drop its slots first
    slots = np.flatnonzero((qty > 0) & real.transfer_open[t][net.transfer_slot_lane])
    if slots.size == 0:
        return 0.0
    lane, sku, q = net.transfer_slot_lane[slots], net.transfer_slot_sku[slots], qty[slots]
    origin, dest = net.tl_origin[lane], net.tl_destination[lane]
    # capacity is judged on post-shipment on hand plus everything inbound (see module docstring)
    position = state.on_hand.sum(axis=1) + state.inbound[t + 1 :].sum(axis=(0, 2))
    need = np.bincount(origin * net.K + sku, weights=q, minlength=net.W * net.K).reshape(net.W, net.K)
    incoming = np.bincount(dest, weights=q, minlength=net.W)
    if np.all(need <= state.on_hand) and np.all(position + incoming <= net.capacity):
        sends = np.ones(slots.size, dtype=bool)  # fast path: every slot passes its checks in any order
    else:
        sends = np.zeros(slots.size, dtype=bool)
        stock = state.on_hand.tolist()
        pos, cap = position.tolist(), net.capacity.tolist()
        for i, (o, d, k, n) in enumerate(zip(origin.tolist(), dest.tolist(), sku.tolist(), q.tolist(), strict=True)):
            if stock[o][k] < n or pos[d] + n > cap[d]:
                continue
            stock[o][k] -= n
            pos[d] += n
            sends[i] = True
    lane, sku, q, origin, dest = lane[sends], sku[sends], q[sends], origin[sends], dest[sends]
    np.subtract.at(state.on_hand, (origin, sku), q)
    np.add.at(state.inbound, (t + real.transfer_lead[t, lane], dest, sku), q)
    state.kpi["units_transferred"] += int(q.sum())
    return float(np.sum(q * (net.tl_profit_per_unit[lane] - net.tl_cost_per_unit[lane]) - net.tl_fixed_cost[lane]))


def imbalance(net: Network, on_hand: np.ndarray, lam: float) -> float:
    """Eq.5 summed over warehouses: ``lam * sum_{w,k: I*>0} ((I*_wk - I_wk) / I*_wk)^2`` (USD)."""
    target = net.target_stock
    scored = target > 0
    gap = np.where(scored, (target - on_hand) / np.where(scored, target, 1), 0.0)
    return float(lam * np.sum(gap * gap))


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
