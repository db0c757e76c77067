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

The rules themselves are :mod:`envs.kernels` (compiled loops with a batch axis); this module is their
``B = 1`` face for the single env: a :class:`State` in, a new :class:`State` and the terms out, the
input never modified, so a caller may keep, copy or branch from any state. The terms are priced by
:mod:`envs.reward`. The MILP baselines encode exactly these rules; ``tests/test_contract.py`` proves it.
"""

from __future__ import annotations

import numpy as np

from envs import kernels
from envs.kernels import kernel_net
from envs.network import Network
from envs.realization import Trace
from envs.reward import TERM_NAMES

KPI_COUNTERS = (
    "units_demanded",
    "units_shipped",
    "units_on_time",
    "units_abnormal",
    "delivery_days",  # sum over shipped units of transit days
    "transport_cost",  # Eq.1 total, USD
    "units_transferred",
)


class State:
    """Episode state, held as batch-of-one arrays (what the kernels step); treat it as a value.

    Shapes: ``W`` warehouses, ``K`` SKUs, ``T`` days, ``H`` max transfer lead.

    * ``day``: index of the day about to be played, 0..T (T = episode over);
    * ``on_hand`` ``[W, K]`` int: units on hand now (today's arrivals included);
    * ``inbound`` ``[T + H + 1, W, K]`` int: transfer units arriving at the start of each absolute day;
    * ``en_route`` ``[W]`` int: transfer units on their way to each warehouse;
    * ``supplied``, ``shipped``: units received from suppliers / delivered to customers so far;
    * ``kpi``: the :data:`KPI_COUNTERS` summed over the days played;
    * ``arrived_through``: last day whose arrivals are on hand (T - 1 once the episode is over).
    """

    __slots__ = ("arrays",)
    FIELDS = ("day", "on_hand", "inbound", "en_route", "supplied", "shipped", "kpi", "arrived_through")

    def __init__(self, arrays: tuple[np.ndarray, ...]) -> None:
        self.arrays = arrays  # the kernels' state arguments, batch axis of 1, in FIELDS order

    day = property(lambda self: int(self.arrays[0][0]))
    on_hand = property(lambda self: self.arrays[1][0])
    inbound = property(lambda self: self.arrays[2][0])
    en_route = property(lambda self: self.arrays[3][0])
    supplied = property(lambda self: int(self.arrays[4][0]))
    shipped = property(lambda self: int(self.arrays[5][0]))
    kpi = property(lambda self: dict(zip(KPI_COUNTERS, self.arrays[6][0].tolist(), strict=True)))
    arrived_through = property(lambda self: int(self.arrays[7][0]))

    def in_transit(self) -> int:
        """Transfer units sent and not yet on hand (at episode end: those that would arrive after it)."""
        return int(self.en_route.sum())

    def copy(self) -> State:
        return State(tuple(a.copy() for a in self.arrays))


def lots_shipped(
    net: Network, lots: np.ndarray, delivery_open: np.ndarray, on_hand: np.ndarray, lot_choice: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What today's lot choices ship, by the env's own rule (:func:`envs.kernels._ship_lots`, slot order, whole
    lots, open lanes, stock left): ``(units [S], lane [S])`` per lot slot (lane -1: not shipped). ``on_hand``
    ``[W, K]`` is the stock at the start of the day; it is not changed."""
    sent = np.empty(net.n_lots, dtype=np.int64)
    lane_of = np.empty(net.n_lots, dtype=np.int64)
    stock = np.array(on_hand, dtype=np.int64)
    choice = np.ascontiguousarray(lot_choice, dtype=np.int64)
    kernels._ship_lots(kernel_net(net), np.ascontiguousarray(lots, dtype=np.int64),
                       np.ascontiguousarray(delivery_open, dtype=np.bool_), stock, choice, sent, lane_of)  # fmt: skip
    return sent, lane_of


def initial_state(net: Network, trace: Trace) -> State:
    """Day 0 with its arrivals on hand."""
    arrays = empty_state(net, 1)
    kernels.start(0, kernel_net(net), trace.batch[8], *arrays)
    return State(arrays)


def empty_state(net: Network, B: int) -> tuple[np.ndarray, ...]:
    """The kernels' state arrays of ``B`` members (zeros; :func:`envs.kernels.start` begins an episode), in
    :attr:`State.FIELDS` order."""
    return (
        np.zeros(B, dtype=np.int64),
        np.zeros((B, net.W, net.K), dtype=np.int64),
        np.zeros((B, net.T + net.tl_max_lead + 1, net.W, net.K), dtype=np.int64),
        np.zeros((B, net.W), dtype=np.int64),
        np.zeros(B, dtype=np.int64),
        np.zeros(B, dtype=np.int64),
        np.zeros((B, len(KPI_COUNTERS)), dtype=np.float64),
        np.zeros(B, dtype=np.int64),
    )


_ACTIVE = np.ones(1, dtype=np.bool_)


def transition(
    net: Network, trace: Trace, state: State, lot_choice: np.ndarray, transfer_choice: np.ndarray
) -> tuple[State, dict[str, float]]:
    """Play day ``state.day``: ``(next state, reward terms)`` (positive magnitudes but Eq.2, USD).

    ``lot_choice``: ``[R*K*J]`` int, 0 = reject, ``i`` = the region's ``i``-th lane.
    ``transfer_choice``: ``[L*K]`` int, level index per transfer slot.
    (:class:`envs.layout.ActionLayout` turns an env action into these.)
    """
    new = state.copy()
    terms = np.zeros((1, len(TERM_NAMES)))
    lots = np.ascontiguousarray(lot_choice, dtype=np.int64)[None]
    transfers = np.ascontiguousarray(transfer_choice, dtype=np.int64)[None]
    kernels.step(kernel_net(net), *trace.batch, *new.arrays, lots, transfers, _ACTIVE, terms)
    return new, dict(zip(TERM_NAMES, terms[0].tolist(), strict=True))


def day_masks(net: Network, trace: Trace, state: State, routes: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(lot mask [R*K*J, 1 + max lanes], transfer mask [L*K, max levels])`` bool: each choice feasible alone.

    Reject and send-nothing (column 0) are always allowed; a lane needs to be open today with the lot's
    size in its warehouse (an empty lot allows only reject); a transfer level ``q > 0`` needs the lane
    open, ``q`` units at the origin and room for ``q`` in the destination's inventory position. Lots are
    judged on the stock at the start of the day; transfers on the same stock with every lot rejected,
    or, when ``routes`` is False (the fixed routing rule of ``CrossBorderTransfer-v0``), on the stock
    the rule leaves, which makes that mask exact.
    """
    lot_mask = np.zeros((1, *net.lot_lane_table.shape), dtype=np.bool_)
    transfer_mask = np.zeros((1, max(net.L * net.K, 0), net.transfer_qty_table.shape[1]), dtype=np.bool_)
    b = trace.batch
    a = state.arrays
    kernels.masks(kernel_net(net), b[0], b[5], b[6], a[0], a[1], a[3], net.lot_home_choice, routes, lot_mask,
                  transfer_mask)  # fmt: skip
    return lot_mask[0], transfer_mask[0] if net.L else np.ones((0, 1), dtype=bool)


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
