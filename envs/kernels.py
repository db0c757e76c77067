"""The day transition as compiled loops over a leading batch axis: the one implementation of the env's rules.

Every array here has the batch axis first (``B`` episodes, each with its own realization). The single
env is the ``B = 1`` case (:mod:`envs.dynamics` wraps it as a pure function of a :class:`State`), the
batched env (:mod:`envs.batched`) steps all ``B`` at once; both call these kernels, so everything the
contract tests prove about the single env holds for the batch member by member.

The rules are sequential by definition (lots in slot order each take stock or fail, transfers in slot
order each take stock and capacity or fail), so they are written as loops and compiled with numba
(``cache=True``: compiled once per machine, on first use). Shapes: ``W`` warehouses, ``K`` SKUs, ``S``
lot slots (``R*K*J``), ``C`` choices per lot slot (``1 + max lanes``), ``D`` delivery lanes, ``L``
transfer lanes, ``LK`` transfer slots, ``V`` levels, ``T`` days, ``N = T + H + 1`` inbound days, ``P``
scored (warehouse, SKU) pairs.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange, types
from numba.experimental import structref

from envs import sampler
from envs.lots import lot_size
from envs.reward import delay_penalty_per_unit, route_cost_per_unit

# reward terms in envs.reward.TERM_NAMES order, as columns of the ``terms`` output
EQ1, EQ2, EQ4, EQ5, LOST = 0, 1, 2, 3, 4
# KPI counters in envs.dynamics.KPI_COUNTERS order
DEMANDED, SHIPPED, ON_TIME, ABNORMAL, DELIVERY_DAYS, TRANSPORT_COST, TRANSFERRED = range(7)


@structref.register
class _NetArraysType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class NetArrays(structref.StructRefProxy):
    """The network's arrays the kernels read, one object passed whole (a numba structure: one argument to unpack
    per call instead of one per array). Fields, in order (:func:`net_arrays`)::

        lot_lane_table: np.ndarray  # [S, C] int, lane per choice, -1 = reject / invalid
        lot_lane_c: np.ndarray  # [S, C] int, lane per choice, 0 where -1
        lot_valid: np.ndarray  # [S, C] bool
        lot_stock_index: np.ndarray  # [S, C] int, flat w*K + k of the choice's stock
        lot_sku: np.ndarray  # [S]
        lot_unit_profit: np.ndarray  # [S] float
        lot_lost_penalty: np.ndarray  # [S] float
        lot_sla_days: np.ndarray  # [S] int
        dl_warehouse: np.ndarray  # [D]
        transfer_qty_table: np.ndarray  # [LK, V] int units per level
        transfer_level_valid: np.ndarray  # [LK, V] bool
        transfer_slot_lane: np.ndarray  # [LK]
        transfer_slot_sku: np.ndarray  # [LK]
        tl_origin: np.ndarray  # [L]
        tl_destination: np.ndarray  # [L]
        tl_unit_margin: np.ndarray  # [L] float, profit_per_unit - cost_per_unit
        tl_fixed_cost: np.ndarray  # [L] float
        capacity: np.ndarray  # [W] int
        scored_index: np.ndarray  # [P] flat w*K + k
        scored_target: np.ndarray  # [P] float
        imbalance_lambda: float
        J: int  # lots per (region, SKU)
        initial_stock: np.ndarray  # [W, K] int
        dl_unit_base_cost: np.ndarray  # [D] float, Eq.1 per unit before transit days
        dl_cost_per_day: np.ndarray  # [D] float, Eq.1 per unit and transit day
        dl_sla_days: np.ndarray  # [D] int, t0 of the lane's region (Eq.4)
        delay_alpha: float  # alpha of Eq.4
    """


NET_FIELDS = (
    "lot_lane_table",
    "lot_lane_c",
    "lot_valid",
    "lot_stock_index",
    "lot_sku",
    "lot_unit_profit",
    "lot_lost_penalty",
    "lot_sla_days",
    "dl_warehouse",
    "transfer_qty_table",
    "transfer_level_valid",
    "transfer_slot_lane",
    "transfer_slot_sku",
    "tl_origin",
    "tl_destination",
    "tl_unit_margin",
    "tl_fixed_cost",
    "capacity",
    "scored_index",
    "scored_target",
    "imbalance_lambda",
    "J",
    "initial_stock",
    "dl_unit_base_cost",
    "dl_cost_per_day",
    "dl_sla_days",
    "delay_alpha",
)
structref.define_proxy(NetArrays, _NetArraysType, list(NET_FIELDS))


def net_arrays(net) -> NetArrays:
    """The kernels' view of an :class:`envs.network.Network` (contiguous arrays of fixed dtypes)."""
    i64, f64 = np.int64, np.float64

    def c(x, dtype):
        return np.ascontiguousarray(x, dtype=dtype)

    return NetArrays(
        c(net.lot_lane_table, i64), c(net.lot_lane_c, i64), c(net.lot_valid, np.bool_), c(net.lot_stock_index, i64),
        c(net.lot_sku, i64), c(net.lot_unit_profit, f64), c(net.lot_lost_penalty, f64), c(net.lot_sla_days, i64),
        c(net.dl_warehouse, i64), c(net.transfer_qty_table, i64), c(net.transfer_level_valid, np.bool_),
        c(net.transfer_slot_lane, i64), c(net.transfer_slot_sku, i64), c(net.tl_origin, i64),
        c(net.tl_destination, i64), c(net.tl_profit_per_unit - net.tl_cost_per_unit, f64), c(net.tl_fixed_cost, f64),
        c(net.capacity, i64), c(net.scored_index, i64), c(net.scored_target, f64), float(net.imbalance_lambda),
        int(net.J), c(net.initial_stock, i64), c(net.dl_unit_base_cost, f64), c(net.dl_cost_per_day, f64),
        c(net.sla_days[net.dl_region], i64), float(net.delay_alpha),
    )  # fmt: skip


@functools.lru_cache(maxsize=64)
def kernel_net(net) -> NetArrays:
    """The kernels' arrays of ``net`` (built once per network; ``Network`` hashes by identity)."""
    return net_arrays(net)


# the per-unit formulas of envs.lots and envs.reward, compiled from their one definition
_lot_size = njit(cache=True)(lot_size)
_route_cost = njit(cache=True)(route_cost_per_unit)
_delay_penalty = njit(cache=True)(delay_penalty_per_unit)


@njit(cache=True, inline="always")
def compile_trace(net, demand, transit, lots, route, delay):
    """One member's trace from its realization: ``lots[T, S]`` (units, slot order ``(r, k, j)``) from
    ``demand[T, R, K]`` (:func:`envs.lots.lot_size`), and Eq.1 / Eq.4 per unit ``route``/``delay[T, D]`` (USD)
    from ``transit[T, D]`` (days; :func:`envs.reward.lane_unit_costs`' formulas)."""
    T, R, K = demand.shape
    J = net.J
    for t in range(T):
        s = 0
        for r in range(R):
            for k in range(K):
                n = demand[t, r, k]
                for j in range(J):
                    lots[t, s] = _lot_size(n, J, j)
                    s += 1
        for d in range(transit.shape[1]):
            tau = transit[t, d]
            route[t, d] = _route_cost(net.dl_unit_base_cost[d], net.dl_cost_per_day[d], tau)
            delay[t, d] = _delay_penalty(net.delay_alpha, tau, net.dl_sla_days[d])


@njit(cache=True, inline="always")
def start(b, net, supply, day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived):
    """Member ``b`` at day 0: the initial stock, nothing in transit, zero counters, day 0's arrivals on hand."""
    day[b] = 0
    supplied[b] = 0
    shipped[b] = 0
    arrived[b] = 0
    on_hand[b] = net.initial_stock
    inbound[b] = 0
    en_route[b] = 0
    kpi[b] = 0.0
    receive(b, supply, day, on_hand, inbound, en_route, supplied, arrived)


@njit(cache=True, inline="always")
def _ship_lots(net, lots, dopen, on_hand, choice, sent, lane_of):
    """Lots in slot order, each shipped whole if its lane is open and the stock left suffices.

    Fills ``sent[S]`` (units) and ``lane_of[S]`` (lane, -1 = none); takes the stock from ``on_hand[W, K]``.
    """
    for s in range(lots.shape[0]):
        sent[s] = 0
        lane_of[s] = -1
        lane = net.lot_lane_table[s, choice[s]]
        n = lots[s]
        if lane < 0 or n <= 0 or not dopen[lane]:
            continue
        w, k = net.dl_warehouse[lane], net.lot_sku[s]
        if on_hand[w, k] >= n:
            on_hand[w, k] -= n
            sent[s] = n
            lane_of[s] = lane


@njit(cache=True)
def step(net, lots, route, delay, transit, abnormal, dopen, topen, lead, supply,
         day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
         lot_choice, transfer_choice, active, terms):  # fmt: skip
    """Play one day of every member ``b`` with ``active[b]``, in place; write its terms to ``terms[b]``.

    Trace arrays: ``lots[B, T, S]``, ``route``/``delay[B, T, D]`` (Eq.1/Eq.4 per unit), ``transit``/
    ``abnormal[B, T, D]`` (days), ``dopen[B, T, D]``, ``topen[B, T, L]``, ``lead[B, T, L]``,
    ``supply[B, T, W, K]``. State: ``day``/``supplied``/``shipped``/``arrived[B]``, ``on_hand[B, W, K]``,
    ``inbound[B, N, W, K]``, ``en_route[B, W]``, ``kpi[B, 7]``. Actions: ``lot_choice[B, S]``,
    ``transfer_choice[B, LK]``.
    """
    B, W = on_hand.shape[0], on_hand.shape[1]
    S = lots.shape[2]
    sent = np.empty(S, dtype=np.int64)
    lane_of = np.empty(S, dtype=np.int64)
    position = np.empty(W, dtype=np.int64)
    for b in range(B):
        if active[b]:
            _step_member(b, net, lots, route, delay, transit, abnormal, dopen, topen, lead, supply,
                         day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
                         lot_choice, transfer_choice, terms, sent, lane_of, position)  # fmt: skip


@njit(cache=True, inline="always")
def _step_member(b, net, lots, route, delay, transit, abnormal, dopen, topen, lead, supply,
                 day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
                 lot_choice, transfer_choice, terms, sent, lane_of, position):  # fmt: skip
    """:func:`step` of member ``b``; ``sent``/``lane_of[S]`` and ``position[W]`` are scratch."""
    W, K = on_hand.shape[1], on_hand.shape[2]
    S = lots.shape[2]
    T = lots.shape[1]
    t = day[b]
    oh = on_hand[b]
    _ship_lots(net, lots[b, t], dopen[b, t], oh, lot_choice[b], sent, lane_of)
    eq1 = eq2 = eq4 = lost = 0.0
    n_demanded = n_sent = n_on_time = n_abnormal = 0
    delivery_days = 0.0
    for s in range(S):
        n = sent[s]
        n_demanded += lots[b, t, s]
        lost += (lots[b, t, s] - n) * net.lot_lost_penalty[s]
        if n == 0:
            continue
        lane = lane_of[s]
        eq1 += n * route[b, t, lane]
        eq4 += n * delay[b, t, lane]
        eq2 += n * net.lot_unit_profit[s]
        n_sent += n
        tau = transit[b, t, lane]
        if tau <= net.lot_sla_days[s]:
            n_on_time += n
        if abnormal[b, t, lane] > 0:
            n_abnormal += n
        delivery_days += n * tau
    # transfers in slot order: stock left after the lots, capacity on the growing inventory position
    for w in range(W):
        total = 0
        for k in range(K):
            total += oh[w, k]
        position[w] = total + en_route[b, w]
    n_transferred = 0
    for slot in range(transfer_choice.shape[1]):
        q = net.transfer_qty_table[slot, transfer_choice[b, slot]]
        lane = net.transfer_slot_lane[slot]
        if q <= 0 or not topen[b, t, lane]:
            continue
        o, d, k = net.tl_origin[lane], net.tl_destination[lane], net.transfer_slot_sku[slot]
        if oh[o, k] < q or position[d] + q > net.capacity[d]:
            continue
        oh[o, k] -= q
        position[d] += q
        inbound[b, t + lead[b, t, lane], d, k] += q
        en_route[b, d] += q
        eq2 += q * net.tl_unit_margin[lane] - net.tl_fixed_cost[lane]
        n_transferred += q
    eq5 = 0.0
    for p in range(net.scored_index.shape[0]):
        i = net.scored_index[p]
        gap = (net.scored_target[p] - oh[i // K, i % K]) / net.scored_target[p]
        eq5 += net.imbalance_lambda * (gap * gap)
    terms[b, 0], terms[b, 1], terms[b, 2], terms[b, 3], terms[b, 4] = eq1, eq2, eq4, eq5, lost
    kpi[b, 0] += n_demanded
    kpi[b, 1] += n_sent
    kpi[b, 2] += n_on_time
    kpi[b, 3] += n_abnormal
    kpi[b, 4] += delivery_days
    kpi[b, 5] += eq1
    kpi[b, 6] += n_transferred
    shipped[b] += n_sent
    day[b] = t + 1
    if t + 1 < T:
        receive(b, supply, day, on_hand, inbound, en_route, supplied, arrived)


@njit(cache=True, inline="always")
def receive(b, supply, day, on_hand, inbound, en_route, supplied, arrived):
    """Put member ``b``'s arrivals of day ``day[b]`` (transfers and supplier units) on hand."""
    t = day[b]
    W, K = on_hand.shape[1], on_hand.shape[2]
    for w in range(W):
        for k in range(K):
            arriving = inbound[b, t, w, k]
            on_hand[b, w, k] += arriving + supply[b, t, w, k]
            en_route[b, w] -= arriving
            supplied[b] += supply[b, t, w, k]
    arrived[b] = t


@njit(cache=True)
def masks(net, lots, dopen, topen, day, on_hand, en_route, fixed_lot_choice, routes, lot_mask, transfer_mask):
    """The feasible choices of each slot, each judged alone: ``lot_mask[B, S, C]``, ``transfer_mask[B, LK, V]``.

    Lots are judged on the stock at the start of the day; transfers on the same stock with every lot
    rejected, or, when the lots are fixed by rule (``routes`` False), on the stock the rule leaves.
    A member whose episode is over (``day[b] == T``) allows only the null choices.
    """
    B, W, K = on_hand.shape
    S = lot_mask.shape[1]
    stock = np.empty((W, K), dtype=np.int64)
    sent = np.empty(S, dtype=np.int64)
    lane_of = np.empty(S, dtype=np.int64)
    for b in range(B):
        _masks_member(b, net, lots, dopen, topen, day, on_hand, en_route, fixed_lot_choice, routes, lot_mask,
                      transfer_mask, stock, sent, lane_of)  # fmt: skip


@njit(cache=True, inline="always")
def _masks_member(b, net, lots, dopen, topen, day, on_hand, en_route, fixed_lot_choice, routes, lot_mask,
                  transfer_mask, stock, sent, lane_of):  # fmt: skip
    """:func:`masks` of member ``b``; ``stock[W, K]``, ``sent``/``lane_of[S]`` are scratch."""
    K = on_hand.shape[2]
    S, C = lot_mask.shape[1], lot_mask.shape[2]
    LK, V = transfer_mask.shape[1], transfer_mask.shape[2]
    T = lots.shape[1]
    t = day[b]
    lot_mask[b] = False
    transfer_mask[b] = False
    lot_mask[b, :, 0] = True
    transfer_mask[b, :, 0] = True
    if t >= T:
        return
    flat = on_hand[b].ravel()
    for s in range(S):
        n = lots[b, t, s]
        if n <= 0:
            continue
        for c in range(1, C):
            if net.lot_valid[s, c] and dopen[b, t, net.lot_lane_c[s, c]] and flat[net.lot_stock_index[s, c]] >= n:
                lot_mask[b, s, c] = True
    if LK == 0:
        return
    stock[:, :] = on_hand[b]
    if not routes:
        _ship_lots(net, lots[b, t], dopen[b, t], stock, fixed_lot_choice, sent, lane_of)
    for slot in range(LK):
        lane = net.transfer_slot_lane[slot]
        if not topen[b, t, lane]:
            continue
        o, d, k = net.tl_origin[lane], net.tl_destination[lane], net.transfer_slot_sku[slot]
        position = en_route[b, d]
        for kk in range(K):
            position += stock[d, kk]
        room = net.capacity[d] - position
        for v in range(1, V):
            q = net.transfer_qty_table[slot, v]
            if net.transfer_level_valid[slot, v] and q <= stock[o, k] and q <= room:
                transfer_mask[b, slot, v] = True


@njit(cache=True)
def observe(lots, dopen, topen, day, on_hand, inbound, forecast, n_forecast, stock_scale, demand_scale, out):
    """The observation of every member into ``out[B, obs_dim]`` (float32), blocks in the manual's order:
    on hand, pipeline (day last), lots, lanes open, day, weekday, the next ``n_forecast`` days of
    ``forecast[T + F + 1, R*K]``."""
    for b in range(on_hand.shape[0]):
        _observe_member(b, lots, dopen, topen, day, on_hand, inbound, forecast, n_forecast, stock_scale, demand_scale,
                        out)  # fmt: skip


@njit(cache=True, inline="always")
def _observe_member(b, lots, dopen, topen, day, on_hand, inbound, forecast, n_forecast, stock_scale, demand_scale,
                    out):  # fmt: skip
    """:func:`observe` of member ``b``."""
    W, K = on_hand.shape[1], on_hand.shape[2]
    S, D, L = lots.shape[2], dopen.shape[2], topen.shape[2]
    horizon = lots.shape[1]
    H = inbound.shape[1] - horizon - 1
    F, RK = n_forecast, forecast.shape[1]
    t = day[b]
    row = out[b]
    row[:] = 0.0
    i = 0
    for w in range(W):
        for k in range(K):
            row[i] = on_hand[b, w, k] / stock_scale
            i += 1
    for w in range(W):
        for k in range(K):
            for h in range(H):
                units = inbound[b, t + 1 + h, w, k]
                if units != 0:  # mostly nothing arrives (the row is zero already; 0 / scale is 0.0 too)
                    row[i] = units / stock_scale
                i += 1
    if t < horizon:
        for s in range(S):
            row[i + s] = lots[b, t, s] / demand_scale
        for d in range(D):
            row[i + S + d] = 1.0 if dopen[b, t, d] else 0.0
        for l in range(L):
            row[i + S + D + l] = 1.0 if topen[b, t, l] else 0.0
    i += S + D + L
    row[i] = t / horizon
    row[i + 1 + t % 7] = 1.0
    i += 8
    for f in range(F):
        for j in range(RK):
            row[i] = forecast[t + 1 + f, j]
            i += 1


@njit(cache=True)
def flatten_masks(lot_mask, transfer_mask, lot_flat, transfer_flat, out):
    """The sb3-contrib flat masks ``out[B, sum(nvec)]`` from the per-slot tables: ``lot_flat[S, C]`` and
    ``transfer_flat[LK, V]`` give each choice's position in the flat mask (-1: not a choice of this action)."""
    for b in range(out.shape[0]):
        _flatten_member(b, lot_mask, transfer_mask, lot_flat, transfer_flat, out)


@njit(cache=True, inline="always")
def _flatten_member(b, lot_mask, transfer_mask, lot_flat, transfer_flat, out):
    for s in range(lot_flat.shape[0]):
        for c in range(lot_flat.shape[1]):
            if lot_flat[s, c] >= 0:
                out[b, lot_flat[s, c]] = lot_mask[b, s, c]
    for slot in range(transfer_flat.shape[0]):
        for v in range(transfer_flat.shape[1]):
            if transfer_flat[slot, v] >= 0:
                out[b, transfer_flat[slot, v]] = transfer_mask[b, slot, v]


@njit(cache=True)
def advance(net, lots, route, delay, transit, abnormal, dopen, topen, lead, supply,
            day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
            lot_choice, transfer_choice, active, terms,
            fixed_lot_choice, routes, lot_mask, transfer_mask, lot_flat, transfer_flat, flat,
            forecast, n_forecast, stock_scale, demand_scale, obs):  # fmt: skip
    """:func:`step`, then :func:`masks`, :func:`flatten_masks` and :func:`observe` of the new state, in one
    call (the single env's step: one dispatch instead of four)."""
    step(net, lots, route, delay, transit, abnormal, dopen, topen, lead, supply,
         day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
         lot_choice, transfer_choice, active, terms)  # fmt: skip
    masks(net, lots, dopen, topen, day, on_hand, en_route, fixed_lot_choice, routes, lot_mask, transfer_mask)
    flatten_masks(lot_mask, transfer_mask, lot_flat, transfer_flat, flat)
    observe(lots, dopen, topen, day, on_hand, inbound, forecast, n_forecast, stock_scale, demand_scale, obs)


@structref.register
class _ContextType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class Context(structref.StructRefProxy):
    """What the single env's step reads besides the state, held by the compiled code (one argument instead of
    thirty: a call's cost is mostly unpacking its arguments). Built at each reset (:func:`context`); fields:

    ``net`` (:class:`NetArrays`), ``trace`` (the episode's nine trace arrays, batch axis of 1), ``forecast``,
    ``n_forecast``, ``stock_scale``, ``demand_scale`` (:func:`observe`), ``fixed_lot_choice``, ``routes``
    (:func:`masks`), ``lot_flat``, ``transfer_flat`` (:func:`flatten_masks`), and the outputs the env reads
    after each call: ``terms[1, 5]``, ``lot_mask[1, S, C]``, ``transfer_mask[1, LK, V]``, ``flat[1, sum(nvec)]``;
    ``active``/``idle``: ``[1]`` True / False.
    """


CONTEXT_FIELDS = ("net", "trace", "forecast", "n_forecast", "stock_scale", "demand_scale", "fixed_lot_choice",
                  "routes", "lot_flat", "transfer_flat", "terms", "lot_mask", "transfer_mask", "flat", "active",
                  "idle")  # fmt: skip
structref.define_proxy(Context, _ContextType, list(CONTEXT_FIELDS))


def context(net, trace, forecast, n_forecast, stock_scale, demand_scale, fixed_lot_choice, routes, lot_flat,
            transfer_flat, terms, lot_mask, transfer_mask, flat) -> Context:  # fmt: skip
    """A :class:`Context` (the arrays are shared, not copied: the env reads the outputs from its own references)."""
    return Context(net, tuple(trace), forecast, int(n_forecast), float(stock_scale), float(demand_scale),
                   fixed_lot_choice, bool(routes), lot_flat, transfer_flat, terms, lot_mask, transfer_mask, flat,
                   np.ones(1, np.bool_), np.zeros(1, np.bool_))  # fmt: skip


@njit(cache=True)
def advance_single(ctx, play, day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived, lot_choice,
                   transfer_choice, obs):  # fmt: skip
    """:func:`advance` of the single env's one member with its :class:`Context`: with ``play`` it plays the day of
    ``lot_choice[1, S]``/``transfer_choice[1, LK]`` (terms into ``ctx.terms``); then the masks (``ctx.lot_mask``,
    ``ctx.transfer_mask``, ``ctx.flat``) and the observation ``obs[1, obs_dim]`` of the state."""
    lots, route, delay, transit, abnormal, dopen, topen, lead, supply = ctx.trace
    active = ctx.active if play else ctx.idle
    advance(ctx.net, lots, route, delay, transit, abnormal, dopen, topen, lead, supply,
            day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
            lot_choice, transfer_choice, active, ctx.terms,
            ctx.fixed_lot_choice, ctx.routes, ctx.lot_mask, ctx.transfer_mask, ctx.lot_flat, ctx.transfer_flat,
            ctx.flat, ctx.forecast, ctx.n_forecast, ctx.stock_scale, ctx.demand_scale, obs)  # fmt: skip


@njit(cache=True)  # not inlined (numba 0.68 refuses: "Calling a closure with *args"); one call per run of members
def _advance_members(first, last, net, model, reset, draw, seeds, demand, lots, route, delay, transit, abnormal, dopen,
                     topen, lead, supply, day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
                     lot_choice, transfer_choice, active, terms,
                     fixed_lot_choice, routes, lot_mask, transfer_mask, lot_flat, transfer_flat, flat,
                     forecast, n_forecast, stock_scale, demand_scale, obs):  # fmt: skip
    """The batched env's whole step (:func:`advance_batch`) for members ``first <= b < last``, with own scratch."""
    W, K = on_hand.shape[1], on_hand.shape[2]
    S = lots.shape[2]
    sent = np.empty(S, dtype=np.int64)
    lane_of = np.empty(S, dtype=np.int64)
    position = np.empty(W, dtype=np.int64)
    stock = np.empty((W, K), dtype=np.int64)
    st = np.empty(sampler.STATE_WORDS, np.uint64)
    for b in range(first, last):
        if reset[b]:
            if draw[b]:
                sampler.seed_int(seeds[b], st)
                sampler.draw(st, model, demand[b], transit[b], abnormal[b], dopen[b], lead[b], topen[b], supply[b])
            compile_trace(net, demand[b], transit[b], lots[b], route[b], delay[b])
            start(b, net, supply, day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived)
        elif active[b]:
            _step_member(b, net, lots, route, delay, transit, abnormal, dopen, topen, lead, supply,
                         day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
                         lot_choice, transfer_choice, terms, sent, lane_of, position)  # fmt: skip
        _masks_member(b, net, lots, dopen, topen, day, on_hand, en_route, fixed_lot_choice, routes, lot_mask,
                      transfer_mask, stock, sent, lane_of)  # fmt: skip
        _flatten_member(b, lot_mask, transfer_mask, lot_flat, transfer_flat, flat)
        _observe_member(b, lots, dopen, topen, day, on_hand, inbound, forecast, n_forecast, stock_scale,
                        demand_scale, obs)  # fmt: skip


@njit(cache=True, parallel=True)
def advance_batch(net, model, reset, draw, seeds, demand, lots, route, delay, transit, abnormal, dopen, topen, lead,
                  supply, day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
                  lot_choice, transfer_choice, active, terms,
                  fixed_lot_choice, routes, lot_mask, transfer_mask, lot_flat, transfer_flat, flat,
                  forecast, n_forecast, stock_scale, demand_scale, obs, chunks):  # fmt: skip
    """The batched env's whole step, members in parallel: member ``b`` with ``reset[b]`` starts a new episode (with
    ``draw[b]`` its realization drawn from seed ``seeds[b]`` by :func:`envs.sampler.draw` into
    ``demand[B, T, R, K]`` and the trace arrays, else already there; compiled by :func:`compile_trace`, day 0 by
    :func:`start`); else with ``active[b]`` it plays its day (:func:`step`); then every member's masks, flat mask
    and observation are written (:func:`masks`, :func:`flatten_masks`, :func:`observe`). ``model`` is a
    :class:`envs.sampler.Model`. The members are cut into ``chunks`` runs of consecutive members, stepped by
    numba's threads (at most ``numba.get_num_threads()`` at once); members are independent, so the result does
    not depend on the cut.
    """
    B = on_hand.shape[0]
    chunks = max(1, min(B, chunks))
    for c in prange(chunks):
        _advance_members(c * B // chunks, (c + 1) * B // chunks, net, model, reset, draw, seeds, demand, lots, route,
                         delay, transit, abnormal, dopen, topen, lead, supply, day, on_hand, inbound, en_route,
                         supplied, shipped, kpi, arrived, lot_choice, transfer_choice, active, terms,
                         fixed_lot_choice, routes, lot_mask, transfer_mask, lot_flat, transfer_flat, flat,
                         forecast, n_forecast, stock_scale, demand_scale, obs)  # fmt: skip


# The same step with every member in the calling thread, no thread pool involved (the batched env's default: on a
# loaded machine a thread waiting for a core stalls the whole step). A function of its own, not a second
# compilation of advance_batch: numba's on-disk cache keys a function by its source and signature, not by its
# flags, so two compilations of one function would load each other's code (threads=2 then ran serially).
@njit(cache=True)
def advance_batch_serial(net, model, reset, draw, seeds, demand, lots, route, delay, transit, abnormal, dopen, topen,
                         lead, supply, day, on_hand, inbound, en_route, supplied, shipped, kpi, arrived,
                         lot_choice, transfer_choice, active, terms,
                         fixed_lot_choice, routes, lot_mask, transfer_mask, lot_flat, transfer_flat, flat,
                         forecast, n_forecast, stock_scale, demand_scale, obs):  # fmt: skip
    """:func:`advance_batch` of all members in order, in the calling thread."""
    _advance_members(0, on_hand.shape[0], net, model, reset, draw, seeds, demand, lots, route, delay, transit,
                     abnormal, dopen, topen, lead, supply, day, on_hand, inbound, en_route, supplied, shipped, kpi,
                     arrived, lot_choice, transfer_choice, active, terms, fixed_lot_choice, routes, lot_mask,
                     transfer_mask, lot_flat, transfer_flat, flat, forecast, n_forecast, stock_scale, demand_scale,
                     obs)  # fmt: skip
