"""The one MILP builder: the day rules of ``envs/dynamics.py`` as a HiGHS model, for all three env ids.

Both MILP baselines use it: the hindsight MILP feeds it the episode's realization
(:func:`hindsight_input`), the rolling-horizon policy a forecast built from what a
dispatcher knows (``baselines.rolling``). Build (:func:`build_model`) and solve
(:func:`solve_model`) are separate.

Sets: planned days ``t`` (0 = the first planned day), warehouses ``w``, SKUs ``k``, lot
slots ``s`` (order ``(r, k, j)``), the ``c``-th delivery lane of a slot's region, transfer
slots ``(l, k)`` and their quantity levels ``v``.

Variables (one array per family, columns created only where the env could act):

* ``x[t, s, c]`` integer in ``[0, count]``: how many lots of the group headed by slot ``s`` (the lots of day ``t``
  with the same region, SKU and size; a group of one with fixed routing) ship whole on choice ``c`` (lane open,
  lot non-empty); the group's lots are interchangeable, so they take the shipped choices in slot order;
* ``y[t, l, k, v]`` binary: transfer slot ``(l, k)`` of day ``t`` is sent at level ``v`` (``q_v > 0``, lane open);
* ``inv[t, w, k]`` continuous in ``[0, ub]``: end-of-day on hand (integer whenever ``x, y`` are);
* ``e[t, w, k]`` continuous: Eq.5 of ``(w, k)`` on day ``t`` (pairs with ``I* > 0``);
* ``u[t, d]`` binary: some transfer enters ``d`` on day ``t`` (only where the capacity rule needs it).

Why this is the env exactly (the contract of ``tests/test_contract.py``):

* a lot that chooses a closed lane or finds no stock is lost, like a rejected one, so only shipped
  lots need variables, and since lots ship whole in slot order, any set of lots whose total fits the
  stock of their ``(w, k)`` is reachable: ``sum(shipped) <= stock`` is the whole rule;
* transfers use stock left after the lots (the same balance row), and the destination's capacity rule
  checks ``position + q`` with a position that only grows during the day, so a set of transfers all
  pass iff their total passes; the rule binds only when a transfer enters ``d`` that day;
* in ``CrossBorderTransfer-v0`` the env ships each lot to its home lane *whenever* the stock left
  suffices (slot order): big-M rows on integer stock force ``x = 1`` then (``M`` = a stock upper bound);
* Eq.5 is convex in integer on hand: ``e >= f(i) + (f(i+1) - f(i)) (inv - i)`` for integer ``i`` is
  exact at integers; the cuts are added lazily by :func:`solve_model` until none is violated;
* with free routing, a transfer that arrives after the last planned day and costs more than any Eq.5 gain at its
  origin is fixed to 0 (dropping it keeps every other action feasible and loses nothing);
* ``solve_model(decompose=True)`` (the hindsight MILP) first solves the SKUs apart (the capacity rows are the only
  rows that couple them): a valid bound, and the optimum if the SKU plans together fit the capacity rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import highspy
import numpy as np

from envs.dynamics import TERM_NAMES
from envs.network import Network
from envs.realization import Realization

DECISIONS = ("both", "routing", "transfers")
_INF = highspy.kHighsInf


class MilpError(RuntimeError):
    """The solver ended without a usable plan (infeasible, unbounded, error): a bug, never a tolerance."""


@dataclass(frozen=True)
class PlanInput:
    """Exogenous data over the planned days ``0..T'-1`` (day 0 = the first planned day).

    The hindsight MILP fills it from the realization, the rolling policy from a forecast.
    """

    start_on_hand: np.ndarray  # [W, K] int, on hand at the start of day 0, its arrivals included
    inbound: np.ndarray  # [N >= T'+1, W, K] int, transfers already in transit, arriving at the start of day t (t >= 1)
    supply: np.ndarray  # [T', W, K] int, supplier units arriving at the start of day t (row 0 is in start_on_hand)
    lots: np.ndarray  # [T', R*K*J] int, lot sizes in slot order
    delivery_open: np.ndarray  # [T', D] bool
    unit_route_cost: np.ndarray  # [T', D] USD/unit shipped that day: Eq.1 (base + tau * cost per day)
    unit_delay_penalty: np.ndarray  # [T', D] USD/unit shipped that day: Eq.4 (alpha * max(tau - t0, 0)^2)
    transfer_open: np.ndarray  # [T', L] bool
    transfer_lead: np.ndarray  # [T', L] int >= 1, days until a transfer sent that day arrives

    @property
    def days(self) -> int:
        return int(self.lots.shape[0])


def hindsight_input(net: Network, real: Realization, alpha: float) -> PlanInput:
    """The whole realization as model data: what the hindsight MILP knows."""
    supply = real.supply.copy()
    start = net.initial_stock + supply[0]
    late = np.maximum(real.transit_days - net.sla_days[net.dl_region][None, :], 0)
    return PlanInput(
        start_on_hand=start.astype(np.int64),
        inbound=np.zeros((net.T + net.tl_max_lead + 1, net.W, net.K), dtype=np.int64),
        supply=supply,
        lots=real.lots(net.J).reshape(net.T, -1),
        delivery_open=real.delivery_open.copy(),
        unit_route_cost=net.dl_unit_base_cost[None, :] + real.transit_days * net.dl_cost_per_day[None, :],
        unit_delay_penalty=alpha * (late * late).astype(np.float64),
        transfer_open=real.transfer_open.copy(),
        transfer_lead=real.transfer_lead.copy(),
    )


def eq5_value(lam: float, target: np.ndarray, on_hand: np.ndarray) -> np.ndarray:
    """Eq.5 of one pair, elementwise: ``lam * ((I* - I) / I*)^2`` (USD), same formula as the env."""
    gap = (target - on_hand) / target
    return lam * gap * gap


class _Columns:
    """Column store: bounds, integrality and the coefficient of each column in each reward term."""

    def __init__(self) -> None:
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.integer: list[np.ndarray] = []
        self.terms: dict[str, list[np.ndarray]] = {name: [] for name in TERM_NAMES}
        self.n = 0

    def add(self, count: int, lower, upper, integer: bool, **terms: np.ndarray) -> np.ndarray:
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)))
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)))
        self.integer.append(np.full(count, integer))
        for name in TERM_NAMES:
            self.terms[name].append(np.broadcast_to(np.asarray(terms.get(name, 0.0), dtype=np.float64), (count,)))
        ids = np.arange(self.n, self.n + count)
        self.n += count
        return ids

    def stack(self, name: str) -> np.ndarray:
        parts = self.terms[name] if name in self.terms else getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


class _Rows:
    """Row store as triplets; ``add`` returns the new row ids."""

    def __init__(self) -> None:
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.n = 0

    def add(self, count: int, lower, upper) -> np.ndarray:
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)))
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)))
        ids = np.arange(self.n, self.n + count)
        self.n += count
        return ids

    def entries(self, rows, cols, vals) -> None:
        rows, cols = np.asarray(rows, dtype=np.int64).ravel(), np.asarray(cols, dtype=np.int64).ravel()
        self.r.append(rows)
        self.c.append(cols)
        self.v.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), rows.shape).ravel())

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = np.concatenate(self.r) if self.r else np.zeros(0, dtype=np.int64)
        c = np.concatenate(self.c) if self.c else np.zeros(0, dtype=np.int64)
        v = np.concatenate(self.v) if self.v else np.zeros(0)
        order = np.lexsort((c, r))
        r, c, v = r[order], c[order], v[order]
        start = np.searchsorted(r, np.arange(self.n + 1)).astype(np.int32)
        return start, c.astype(np.int32), v


@dataclass
class DispatchModel:
    """A built model: the HiGHS instance plus the index arrays that map columns back to env actions."""

    net: Network
    data: PlanInput
    decisions: str
    lam: float
    highs: highspy.Highs
    n_cols: int
    n_rows: int
    n_integers: int
    term_coef: dict[str, np.ndarray]  # per reward term: coefficient of every column (positive magnitudes but Eq.2)
    term_const: dict[str, float]  # per reward term: the part no decision changes (lost sales of all lots)
    x_cols: np.ndarray  # [n_x] column ids of x
    x_day: np.ndarray  # [n_x] planned day
    x_slot: np.ndarray  # [n_x] lot slot (the first slot of its group of identical lots)
    x_choice: np.ndarray  # [n_x] env choice (1 + lane index within the region)
    y_cols: np.ndarray  # [n_y] column ids of y
    y_day: np.ndarray
    y_slot: np.ndarray  # [n_y] transfer slot l*K + k
    y_level: np.ndarray  # [n_y] level index (>= 1)
    lot_rep: np.ndarray  # [T', R*K*J] first slot of each lot's group of identical lots (itself if alone)
    lot_count: np.ndarray  # [T', R*K*J] lots in the group a slot heads (0 for the other members)
    inv_cols: np.ndarray  # [T', W, K] column ids of inv
    e_cols: np.ndarray  # [n_e] column ids of e
    e_index: tuple[np.ndarray, np.ndarray, np.ndarray]  # (t, w, k) of each e column
    inv_upper: np.ndarray  # [T', W, K] the upper bound used for inv (and as big-M)
    capacity_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # rows coupling SKUs
    cut_segments: set = field(default_factory=set)  # (e column, i) of every Eq.5 cut in the model
    build_seconds: float = 0.0

    def objective_coef(self) -> np.ndarray:
        """Return per column: ``eq2 - eq1 - eq4 - eq5 - lost``."""
        c = self.term_coef
        return (
            c["eq2_allocation_revenue"]
            - c["eq1_route_cost"]
            - c["eq4_delay_penalty"]
            - c["eq5_imbalance"]
            - c["lost_sales"]
        )

    def write_mps(self, path) -> None:
        """Write the model as it stands (with the Eq.5 cuts added so far) as an MPS file.

        Written as the standard MPS minimization of ``-return`` (some solvers, CBC among them, ignore an
        OBJSENSE MAX section), so its optimal objective is minus the optimal return.
        """
        lp = self.highs.getLp()
        lp.sense_ = highspy.ObjSense.kMinimize
        lp.col_cost_ = -np.asarray(lp.col_cost_)
        lp.offset_ = -lp.offset_
        out = highspy.Highs()
        out.setOptionValue("output_flag", False)
        out.passModel(lp)
        status = out.writeModel(str(path))  # kWarning: HiGHS made up the row/column names
        if status == highspy.HighsStatus.kError:
            raise MilpError(f"HiGHS could not write {path!s}: {status}")

    # -------------------------------------------------------------- Eq.5 cuts
    def add_eq5_cuts(self, e_ids: np.ndarray, segments: np.ndarray) -> int:
        """Add ``e >= f(i) + (f(i+1) - f(i)) (inv - i)`` for each (e column position, segment i) not yet present."""
        pairs = ((int(a), int(b)) for a, b in zip(e_ids, segments, strict=True))
        keep = [p for p in dict.fromkeys(pairs) if p not in self.cut_segments]
        if not keep:
            return 0
        self.cut_segments.update(keep)
        pos, seg = np.array(keep).T
        t, w, k = (ix[pos] for ix in self.e_index)
        target = self.net.target_stock[w, k].astype(np.float64)
        f0 = eq5_value(self.lam, target, seg.astype(np.float64))
        slope = eq5_value(self.lam, target, seg + 1.0) - f0
        n = len(seg)
        # e[t,w,k] - slope * inv[t,w,k] >= f(i) - slope * i
        start = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
        index = np.stack([self.e_cols[pos], self.inv_cols[t, w, k]], axis=1).ravel().astype(np.int32)
        value = np.stack([np.ones(n), -slope], axis=1).ravel()
        self.highs.addRows(n, f0 - slope * seg, np.full(n, _INF), len(index), start, index, value)
        self.n_rows += n
        return n


def build_model(net: Network, data: PlanInput, decisions: str, lam: float, eq5_cuts: str = "lazy") -> DispatchModel:
    """Build the MILP of ``data`` for an env whose action holds ``decisions`` ("both", "routing", "transfers").

    ``eq5_cuts="all"`` adds every secant cut up front (exact with no loop, large), ``"lazy"`` a few
    around each target; :func:`solve_model` adds violated ones until none is left.
    """
    if decisions not in DECISIONS:
        raise ValueError(f"decisions={decisions!r} is not allowed; allowed: {list(DECISIONS)}")
    if eq5_cuts not in ("lazy", "all"):
        raise ValueError(f"eq5_cuts={eq5_cuts!r} is not allowed; allowed: ['lazy', 'all']")
    t0 = time.perf_counter()
    T, W, K, L = data.days, net.W, net.K, net.L
    routes, transfers = decisions in ("both", "routing"), decisions in ("both", "transfers")
    cols, rows = _Columns(), _Rows()

    # ---- x[t, s, c] = 1 if lot s of day t ships on the region's c-th lane (choice c >= 1)
    table = net.lot_lane_table  # [S, C]
    lane_c = np.where(table >= 0, table, 0)
    allowed = (table >= 0)[None, :, :] & (data.lots > 0)[:, :, None] & data.delivery_open[:, lane_c]
    allowed[:, :, 0] = False
    if not routes:  # the fixed rule of CrossBorderTransfer-v0: the home lane only
        home = _home_choice(net)
        allowed &= np.arange(table.shape[1])[None, None, :] == home[None, :, None]
    # identical lots (same day, region, SKU and size) are interchangeable when routing is free: one integer
    # column per (day, group, choice) counts the group's lots shipped on that lane (breaks the symmetry)
    lot_rep, lot_count = _lot_groups(data.lots, net.J, aggregate=routes)
    allowed &= (lot_rep == np.arange(net.n_lots)[None, :])[:, :, None]
    x_day, x_slot, x_choice = np.nonzero(allowed)
    x_lane = table[x_slot, x_choice]
    x_size = data.lots[x_day, x_slot].astype(np.float64)
    x_sku = net.lot_sku[x_slot]
    x_wh = net.dl_warehouse[x_lane]
    x_cols = cols.add(
        len(x_day), 0.0, lot_count[x_day, x_slot], True,
        eq1_route_cost=x_size * data.unit_route_cost[x_day, x_lane],
        eq2_allocation_revenue=x_size * net.unit_profit[x_sku],
        eq4_delay_penalty=x_size * data.unit_delay_penalty[x_day, x_lane],
        lost_sales=-x_size * net.lost_penalty[x_sku],
    )  # fmt: skip
    lost_const = float(np.sum(data.lots * net.lost_penalty[net.lot_sku][None, :]))

    # ---- y[t, l, k, v] = 1 if transfer slot (l, k) of day t sends level v (q_v > 0)
    qty = net.transfer_qty_table  # [L*K, V]
    if transfers and L:
        slot_lane = np.arange(L * K) // K
        ok = (qty > 0)[None, :, :] & data.transfer_open[:, slot_lane][:, :, None]
        ok &= (np.arange(qty.shape[1])[None, :] < net.transfer_nvec[:, None])[None, :, :]
        y_day, y_slot, y_level = np.nonzero(ok)
    else:
        y_day = y_slot = y_level = np.zeros(0, dtype=np.int64)
    y_lane, y_sku = y_slot // K, y_slot % K
    y_q = qty[y_slot, y_level].astype(np.float64)
    y_origin, y_dest = net.tl_origin[y_lane], net.tl_destination[y_lane]
    y_arrive = y_day + data.transfer_lead[y_day, y_lane]  # planned day of arrival (may be >= T')
    y_cols = cols.add(
        len(y_day), 0.0, 1.0, True,
        eq2_allocation_revenue=y_q * (net.tl_profit_per_unit[y_lane] - net.tl_cost_per_unit[y_lane])
        - net.tl_fixed_cost[y_lane],
    )  # fmt: skip

    # ---- bounds on stock, used for inv's upper bound and as the tight big-M of the rules below
    inbound = np.zeros((max(len(data.inbound), T + 1), W, K), dtype=np.int64)
    inbound[: len(data.inbound)] = data.inbound
    future_inbound = inbound[::-1].cumsum(axis=0)[::-1]  # [t] = units in transit arriving on day >= t
    start_position = data.start_on_hand.sum(axis=1) + inbound[1:].sum(axis=(0, 2))  # [W]
    cum_supply = np.concatenate([[np.zeros(W)], np.cumsum(data.supply[1:].sum(axis=2), axis=0)])  # [T', W]
    # position never passes max(capacity, start position) except by supply (transfers must keep it within capacity)
    position_ub = np.maximum(net.capacity, start_position)[None, :] + cum_supply  # [T', W]
    max_in = np.zeros((T + 1, W, K))  # largest transfer units that can arrive on each day
    if len(y_day):
        best = {}
        for i, key in enumerate(zip(y_day, y_slot, strict=True)):
            best[key] = max(best.get(key, 0.0), y_q[i])
        keys = np.array(list(best.keys())).reshape(-1, 2)
        kq = np.array(list(best.values()))
        kl = keys[:, 1] // K
        arrive = keys[:, 0] + data.transfer_lead[keys[:, 0], kl]
        inside = arrive < T
        np.add.at(max_in, (arrive[inside], net.tl_destination[kl][inside], keys[inside, 1] % K), kq[inside])
    start_ub = np.zeros((T, W, K))
    start_ub[0] = data.start_on_hand
    for t in range(1, T):
        start_ub[t] = start_ub[t - 1] + data.supply[t] + inbound[t] + max_in[t]
        start_ub[t] = np.minimum(start_ub[t], position_ub[t][:, None])
    start_ub[0] = np.maximum(start_ub[0], 0)

    # ---- dominance: a transfer that arrives after the last planned day only costs money and lowers its origin's
    #      stock. With free routing, dropping it keeps every other action feasible (more origin stock, less in
    #      transit) and changes only Eq.5 at the origin, by at most sum_t' max(0, f(ub) - f(ub - q)) (f convex);
    #      if that cannot repay its cost, y = 0 loses nothing. Not when the origin also receives transfers
    #      (its lower stock could make room for them) nor with the fixed routing rule (more stock ships more lots).
    if routes and len(y_day):
        dominated = _dominated_transfers(net, data, lam, start_ub, y_day, y_origin, y_sku, y_q, y_arrive, cols)
        y_upper = cols.upper[1]
        if len(y_upper) == len(y_day) and dominated.any():
            cols.upper[1] = np.where(dominated, 0.0, y_upper)

    # ---- inv[t, w, k] = end-of-day on hand
    inv_cols = cols.add(T * W * K, 0.0, start_ub.reshape(-1), False).reshape(T, W, K)

    # ---- e[t, w, k] = Eq.5 of the pair on day t (pairs with I* > 0)
    e_t, e_w, e_k = np.nonzero(np.broadcast_to(net.target_stock > 0, (T, W, K)))
    e_cols = cols.add(len(e_t), 0.0, _INF, False, eq5_imbalance=np.ones(len(e_t)))

    # ---- balance: inv[t] = inv[t-1] + supply[t] + inbound[t] + arrivals(y) - sum n x - sum q y_out
    #      (day 0: inv[0] = start_on_hand - sum n x - sum q y_out); inv >= 0 makes lots + transfers fit the stock
    rhs = np.concatenate([data.start_on_hand[None], data.supply[1:] + inbound[1:T]]).astype(np.float64)
    bal = rows.add(T * W * K, rhs.reshape(-1), rhs.reshape(-1)).reshape(T, W, K)
    rows.entries(bal.reshape(-1), inv_cols.reshape(-1), 1.0)
    rows.entries(bal[1:].reshape(-1), inv_cols[:-1].reshape(-1), -1.0)
    rows.entries(bal[x_day, x_wh, x_sku], x_cols, x_size)
    rows.entries(bal[y_day, y_origin, y_sku], y_cols, y_q)
    arrives = y_arrive < T
    rows.entries(bal[y_arrive[arrives], y_dest[arrives], y_sku[arrives]], y_cols[arrives], -y_q[arrives])

    # ---- one choice per lot slot and per transfer slot: sum_c x[t,s,c] <= 1, sum_v y[t,l,k,v] <= 1
    #      (an aggregated lot group: sum_c x[t,g,c] <= its number of lots)
    for day, slot, ids, count in ((x_day, x_slot, x_cols, lot_count), (y_day, y_slot, y_cols, None)):
        if len(ids):
            group, inverse = np.unique(np.stack([day, slot]), axis=1, return_inverse=True)
            r = rows.add(group.shape[1], -_INF, 1.0 if count is None else count[group[0], group[1]])
            rows.entries(r[inverse.ravel()], ids, 1.0)

    # ---- capacity, on days a transfer may enter d:
    #      sum_k (inv[t,d,k] + out[t,d,k]) + sum_{t'<=t, t'+lead>t} q y_in[t',d] <= cap[d] - inbound(>t)[d]
    #      (on hand after lots + everything in transit to d; when position may already exceed capacity
    #      without a transfer, the row holds only if one enters: + M u[t,d] <= ... + M, y_in[t,d] <= u[t,d])
    capacity_rows: list[int] = []  # the only rows that couple SKUs
    for t, d in sorted({(int(a), int(b)) for a, b in zip(y_day, y_dest, strict=True)}):
        entering = np.flatnonzero((y_day == t) & (y_dest == d))
        in_transit = np.flatnonzero((y_dest == d) & (y_day <= t) & (y_arrive > t))
        leaving = np.flatnonzero((y_day == t) & (y_origin == d))
        room = float(net.capacity[d] - future_inbound[t + 1, d].sum())
        # lhs <= position_ub + (largest total entering today) - inbound(>t), so M = that - room
        big_m = 0.0
        if position_ub[t, d] > net.capacity[d]:
            big_m = float(position_ub[t, d] + _best_total(y_slot[entering], y_q[entering]))
            big_m -= float(future_inbound[t + 1, d].sum()) + room
        r = rows.add(1, -_INF, room + big_m)
        capacity_rows.append(int(r[0]))
        rows.entries(np.repeat(r, K), inv_cols[t, d], 1.0)
        rows.entries(np.repeat(r, len(leaving)), y_cols[leaving], y_q[leaving])
        rows.entries(np.repeat(r, len(in_transit)), y_cols[in_transit], y_q[in_transit])
        if big_m > 0:
            u = cols.add(1, 0.0, 1.0, True)
            rows.entries(r, u, big_m)
            link = rows.add(len(entering), -_INF, 0.0)
            rows.entries(link, y_cols[entering], 1.0)
            rows.entries(link, np.repeat(u, len(entering)), -1.0)

    # ---- CrossBorderTransfer-v0 rule: a home-lane lot ships whenever the stock left before it suffices.
    #      stock_start[t,w,k] - sum_{s'<s} n_s' x_s' - (n_s - 1) <= M_s x_s,  M_s = ub(stock_start) - n_s + 1
    #      (x_s = 1 needs the stock: the balance row already makes every prefix fit)
    if not routes:
        arrivals: dict[tuple[int, int, int], list[int]] = {}
        for j in np.flatnonzero(y_arrive < T):
            arrivals.setdefault((int(y_arrive[j]), int(y_dest[j]), int(y_sku[j])), []).append(int(j))
        order = np.lexsort((x_slot, x_sku, x_wh, x_day))
        group_start = 0
        for pos, i in enumerate(order):
            key = (int(x_day[i]), int(x_wh[i]), int(x_sku[i]))
            if pos and key != (int(x_day[order[pos - 1]]), int(x_wh[order[pos - 1]]), int(x_sku[order[pos - 1]])):
                group_start = pos
            t, w, k = key
            prefix = order[group_start:pos]
            big_m = start_ub[t, w, k] - x_size[i] + 1
            if big_m <= 0:
                continue  # the stock can never reach n_s: the lot never ships, and balance forces x_s = 0
            const = float(data.start_on_hand[w, k]) if t == 0 else float(data.supply[t, w, k] + inbound[t, w, k])
            r = rows.add(1, -_INF, x_size[i] - 1 - const)
            if t > 0:
                rows.entries(r, inv_cols[t - 1, w, k], 1.0)
                into = np.array(arrivals.get(key, []), dtype=np.int64)
                rows.entries(np.repeat(r, len(into)), y_cols[into], y_q[into])
            rows.entries(np.repeat(r, len(prefix)), x_cols[prefix], -x_size[prefix])
            rows.entries(r, x_cols[i], -big_m)

    # ---- assemble and pass in one call
    term_coef = {name: cols.stack(name) for name in TERM_NAMES}
    lower, upper, integer = cols.stack("lower"), cols.stack("upper"), cols.stack("integer").astype(bool)
    start, index, value = rows.csr()
    obj = (
        term_coef["eq2_allocation_revenue"]
        - term_coef["eq1_route_cost"]
        - term_coef["eq4_delay_penalty"]
        - term_coef["eq5_imbalance"]
        - term_coef["lost_sales"]
    )
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    status = h.passModel(
        cols.n, rows.n, len(index), int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMaximize), -lost_const,
        obj, lower, upper, np.concatenate(rows.lower) if rows.n else np.zeros(0),
        np.concatenate(rows.upper) if rows.n else np.zeros(0), start, index, value, integer.astype(np.int32),
    )  # fmt: skip
    if status == highspy.HighsStatus.kError:
        raise MilpError(f"HiGHS rejected the model: {status}")
    model = DispatchModel(
        net=net, data=data, decisions=decisions, lam=float(lam), highs=h, n_cols=cols.n, n_rows=rows.n,
        n_integers=int(integer.sum()), term_coef=term_coef,
        term_const={name: (lost_const if name == "lost_sales" else 0.0) for name in TERM_NAMES},
        x_cols=x_cols, x_day=x_day, x_slot=x_slot, x_choice=x_choice, lot_rep=lot_rep, lot_count=lot_count,
        y_cols=y_cols, y_day=y_day, y_slot=y_slot, y_level=y_level,
        inv_cols=inv_cols, e_cols=e_cols, e_index=(e_t, e_w, e_k), inv_upper=start_ub,
        capacity_rows=np.array(capacity_rows, dtype=np.int64),
    )  # fmt: skip
    # ---- Eq.5 cuts: all integer segments [i, i+1] below the bound, or a few around the target
    ub = start_ub[e_t, e_w, e_k].astype(np.int64)
    target = net.target_stock[e_w, e_k]
    if eq5_cuts == "all":
        n_seg = np.maximum(ub, 1)
        pos = np.repeat(np.arange(len(e_t)), n_seg)
        seg = np.arange(n_seg.sum()) - np.repeat(np.cumsum(n_seg) - n_seg, n_seg)
    else:
        steps = np.array([0, -1, 1, -2, 2, -4, 4, -8, 8, -16, 16, -32, 32, -64, 64, -128, 128, -256, 256, -512, 512])
        cand = np.concatenate([target[:, None] + steps[None, :], np.zeros((len(e_t), 1), dtype=np.int64)], axis=1)
        cand = np.clip(cand, 0, np.maximum(ub - 1, 0)[:, None])
        pos = np.repeat(np.arange(len(e_t)), cand.shape[1])
        seg = cand.ravel()
    model.add_eq5_cuts(pos, seg)
    model.build_seconds = time.perf_counter() - t0
    return model


def _dominated_transfers(net, data, lam, start_ub, y_day, y_origin, y_sku, y_q, y_arrive, cols) -> np.ndarray:
    """Transfers (y columns) that arrive after the plan and whose Eq.2 cost exceeds any Eq.5 gain at the origin."""
    T = data.days
    coef = np.asarray(cols.terms["eq2_allocation_revenue"][1], dtype=np.float64)  # the y block (x came first)
    out = np.zeros(len(y_day), dtype=bool)
    receivers = set(np.asarray(net.tl_destination).tolist())
    target = net.target_stock.astype(np.float64)
    for j in np.flatnonzero(y_arrive >= T):
        o, k, q, t = int(y_origin[j]), int(y_sku[j]), float(y_q[j]), int(y_day[j])
        if o in receivers or coef[j] >= 0:
            continue
        gain = 0.0
        if target[o, k] > 0 and lam > 0:
            ub = start_ub[t:, o, k]
            diff = eq5_value(lam, target[o, k], ub) - eq5_value(lam, target[o, k], np.maximum(ub - q, 0.0))
            gain = float(np.maximum(diff, 0.0).sum())
        out[j] = coef[j] + gain < 0
    return out


def _lot_groups(lots: np.ndarray, J: int, aggregate: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(rep, count)``, both ``[T', R*K*J]``: the first slot of each lot's group of identical lots (same day,
    region, SKU and size: slots ``(r, k, 0..J-1)`` are consecutive) and, on that first slot, the group's size."""
    T, S = lots.shape
    slots = np.broadcast_to(np.arange(S), (T, S))
    if not aggregate or J <= 1:
        return slots.copy(), np.ones((T, S), dtype=np.int64)
    by_j = lots.reshape(T, S // J, J)
    first = np.tile(np.arange(J), (T, S // J, 1))
    for j in range(J - 1, -1, -1):  # last pass wins: the smallest j' with the same size
        first = np.where(by_j == by_j[:, :, j : j + 1], j, first)
    rep = (slots.reshape(T, S // J, J) - np.arange(J) + first).reshape(T, S)
    count = np.zeros((T, S), dtype=np.int64)
    np.add.at(count, (np.repeat(np.arange(T), S), rep.ravel()), 1)
    return rep, count


def _best_total(slots: np.ndarray, q: np.ndarray) -> float:
    """Largest total of one level per slot (the most units that can enter in one day)."""
    best: dict[int, float] = {}
    for s, v in zip(slots, q, strict=True):
        best[int(s)] = max(best.get(int(s), 0.0), float(v))
    return sum(best.values())


def _home_choice(net: Network) -> np.ndarray:
    """Env choice (1 + lane position in the region) of each lot slot's home lane, ``[R*K*J]``."""
    region_pos = np.array([int(np.flatnonzero(net.region_lanes[r] == net.home_lane[r])[0]) for r in range(net.R)])
    return 1 + region_pos[net.lot_region]


# ---------------------------------------------------------------------------------------------- solve


@dataclass
class Solution:
    """A solved model. ``objective`` is the exact return of ``plan`` (Eq.5 evaluated at the integer stock)."""

    status: str  # "optimal" or "time_limit"
    objective: float
    bound: float  # best bound (>= objective: we maximize)
    gap: float  # (bound - objective) / max(|objective|, 1e-9)
    seconds: float  # solve time, all cut rounds
    cut_rounds: int
    terms: dict[str, float]  # per reward term, the model's value at the plan (positive magnitudes but Eq.2)
    lot_choice: np.ndarray  # [T', R*K*J] env choice per lot slot (0 = reject)
    transfer_choice: np.ndarray  # [T', L*K] level index per transfer slot
    inv: np.ndarray  # [T', W, K] end-of-day on hand of the plan
    model_eq5: float  # sum of the e columns (equals terms["eq5_imbalance"] once no cut is violated)
    found_plan: bool = True  # False when a time limit left no incumbent (plan = do nothing)


_STATUS_NAMES = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
    highspy.HighsModelStatus.kInterrupt: "time_limit",
}


def solve_model(
    model: DispatchModel,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    max_rounds: int = 200,
    threads: int | None = None,
    decompose: bool = False,
) -> Solution:
    """Solve, adding violated Eq.5 cuts until none is left (each round warm-started from the last plan).

    ``time_limit`` (seconds, all rounds) stops with the best plan, its exact objective and the best bound
    (the bound of a model with fewer cuts is still valid: it is a relaxation). ``mip_gap`` is HiGHS's
    relative gap (0 = prove optimality). ``decompose`` first solves the SKUs apart (see :func:`_solve_by_sku`;
    ignored for ``decisions="transfers"``, whose fixed routing rule keeps other SKUs from doing nothing).
    Infeasible, unbounded or solver errors raise :class:`MilpError`.
    """
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit={time_limit!r} must be > 0 seconds or None")
    if not 0.0 <= mip_gap < 1.0:
        raise ValueError(f"mip_gap={mip_gap!r} must be in [0, 1)")
    t0 = time.perf_counter()
    if decompose and model.decisions != "transfers" and model.net.K > 1:
        status, values, bound, rounds = _solve_by_sku(model, time_limit, mip_gap, max_rounds, threads)
    else:
        status, values, bound, rounds = _solve_loop(model, time_limit, mip_gap, max_rounds, threads)
    seconds = time.perf_counter() - t0
    return _solution(model, values, status, bound, seconds, rounds)


def _solve_loop(model: DispatchModel, time_limit, mip_gap, max_rounds, threads):
    """HiGHS plus the Eq.5 cut loop on ``model.highs``: ``(status, values or None, bound, rounds)``."""
    h = model.highs
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    h.setOptionValue("mip_abs_gap", 1e-9)
    h.setOptionValue("random_seed", 0)
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    t0 = time.perf_counter()
    rounds, status, values, bound = 0, "optimal", None, float("inf")
    while True:
        rounds += 1
        if time_limit is not None:
            left = time_limit - (time.perf_counter() - t0)
            if left <= 0:
                status = "time_limit"
                break
            h.setOptionValue("time_limit", float(left))
        h.run()
        ms = h.getModelStatus()
        info = h.getInfo()
        has_plan = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if ms not in _STATUS_NAMES:
            name = h.modelStatusToString(ms)
            raise MilpError(f"HiGHS ended with status {name!r}: no plan (a model bug, not a limit)")
        status = _STATUS_NAMES[ms]
        bound = min(float(info.mip_dual_bound), simple_bound(model))
        if has_plan:
            values = np.array(h.getSolution().col_value)
        if status != "optimal" or values is None:
            break
        pos, seg = _violated_cuts(model, values)
        if len(pos) == 0:
            break
        if rounds >= max_rounds:
            status = "time_limit"  # out of rounds: the plan is feasible (objective exact) but not proven optimal
            break
        if model.add_eq5_cuts(pos, seg) == 0:
            break  # the cuts are in: e sits below them only by the solver's feasibility tolerance
        values = _raise_e(model, values)
        h.setSolution(len(values), np.arange(len(values), dtype=np.int32), values)
    return status, values, bound, rounds



def _solve_by_sku(model: DispatchModel, time_limit, mip_gap, max_rounds, threads):
    """Exact decomposition by SKU: without its capacity rows the model is one independent problem per SKU.

    Each SKU is solved alone (the other SKUs' lots and transfers fixed to 0: their part is then the do-nothing
    value ``d_j``), so ``sum_k bound_k - (K - 1) * D`` (``D`` = do-nothing return) bounds the optimum of the
    model without capacity rows, hence of the model. The SKU plans together are then checked against the full
    model (x, y fixed, the rest solved): if every capacity row holds, that plan is optimal (within ``mip_gap``).
    Otherwise the full model is solved with the time left, and the SKU bound kept if it is lower (with a time
    limit, the SKUs share at most half of it; a SKU stopped by its share still contributes its bound).
    """
    t0 = time.perf_counter()
    K = model.net.K
    x_sku = model.net.lot_sku[model.x_slot]
    y_sku = model.y_slot % K
    fixed_x, fixed_y = np.zeros(len(model.x_cols)), np.zeros(len(model.y_cols))
    _, dn_values = _fixed_plan_values(model, fixed_x, fixed_y)
    do_nothing = _solution(model, dn_values, "optimal", 0.0, 0.0, 0).objective
    total_bound, rounds, ok = -(K - 1) * do_nothing, 0, dn_values is not None
    bounded = ok
    for k in range(K if ok else 0):
        lp = model.highs.getLp()
        upper = np.array(lp.col_upper_)
        upper[model.x_cols[x_sku != k]] = 0.0
        upper[model.y_cols[y_sku != k]] = 0.0
        lp.col_upper_ = upper
        row_lower, row_upper = np.array(lp.row_lower_), np.array(lp.row_upper_)
        row_lower[model.capacity_rows], row_upper[model.capacity_rows] = -_INF, _INF
        lp.row_lower_, lp.row_upper_ = row_lower, row_upper
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.passModel(lp)
        sub = replace(model, highs=h, cut_segments=set(model.cut_segments))
        # with a time limit, the SKUs share at most half of it, in turn (the rest is left for the whole model)
        left = None if time_limit is None else 0.5 * time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0:
            bounded = False
            break
        status, values, bound, r = _solve_loop(sub, left, mip_gap, max_rounds, threads)
        rounds += r
        total_bound += bound  # a bound even when the SKU stopped on its limit
        if status != "optimal" or values is None:
            ok = False
            continue
        fixed_x[x_sku == k] = np.rint(values[model.x_cols[x_sku == k]])
        fixed_y[y_sku == k] = np.rint(values[model.y_cols[y_sku == k]])
    if ok and bounded:
        feasible, values = _fixed_plan_values(model, fixed_x, fixed_y)
        if feasible:
            return "optimal", values, total_bound, rounds
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 1e-3)
    status, values, bound, r = _solve_loop(model, left, mip_gap, max_rounds, threads)
    return status, values, (min(bound, total_bound) if bounded else bound), rounds + r


def _fixed_plan_values(model: DispatchModel, x: np.ndarray, y: np.ndarray) -> tuple[bool, np.ndarray | None]:
    """Solve the full model with x and y fixed (the rest follows): ``(feasible, column values)``."""
    lp = model.highs.getLp()
    lower, upper = np.array(lp.col_lower_), np.array(lp.col_upper_)
    lower[model.x_cols] = upper[model.x_cols] = x
    lower[model.y_cols] = upper[model.y_cols] = y
    lp.col_lower_, lp.col_upper_ = lower, upper
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return False, None
    return True, np.array(h.getSolution().col_value)


def simple_bound(model: DispatchModel) -> float:
    """An upper bound on the return that needs no solve: every lot on its best lane (or lost, if that costs
    less), every transfer slot at its best level, no Eq.5 (which is >= 0). Valid for any plan; used when
    the solver stops before it has a bound of its own (HiGHS then reports infinity)."""
    obj = model.objective_coef()
    net = model.net
    best_lot = np.zeros((model.data.days, net.n_lots))
    np.maximum.at(best_lot, (model.x_day, model.x_slot), obj[model.x_cols])
    best_lot *= model.lot_count
    best_transfer = np.zeros((model.data.days, net.L * net.K))
    np.maximum.at(best_transfer, (model.y_day, model.y_slot), obj[model.y_cols])
    return float(best_lot.sum() + best_transfer.sum() - model.term_const["lost_sales"])


def _violated_cuts(model: DispatchModel, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq.5 pairs where ``e`` is below ``f(inv)`` at the (integer) stock, and the segment that cuts them off."""
    t, w, k = model.e_index
    inv = np.rint(values[model.inv_cols[t, w, k]])
    exact = eq5_value(model.lam, model.net.target_stock[w, k].astype(np.float64), inv)
    bad = np.flatnonzero(values[model.e_cols] < exact - 1e-7 * (1.0 + exact))  # HiGHS's feasibility tolerance
    seg = np.minimum(inv[bad], np.maximum(model.inv_upper[t[bad], w[bad], k[bad]] - 1, 0))
    return bad, seg.astype(np.int64)


def _raise_e(model: DispatchModel, values: np.ndarray) -> np.ndarray:
    t, w, k = model.e_index
    inv = np.rint(values[model.inv_cols[t, w, k]])
    out = values.copy()
    out[model.e_cols] = eq5_value(model.lam, model.net.target_stock[w, k].astype(np.float64), inv)
    return out


def _lot_choices(model: DispatchModel, x: np.ndarray) -> np.ndarray:
    """Env choice per lot slot ``[T', R*K*J]`` from the x counts: a group's lots take its shipped choices in slot
    order (they are identical, so any assignment has the same return, and the env ships them all iff they fit)."""
    out = np.zeros(model.lot_rep.shape, dtype=np.int64)
    used: dict[tuple[int, int], int] = {}
    members: dict[tuple[int, int], np.ndarray] = {}
    for i in np.flatnonzero(x > 0):
        key = (int(model.x_day[i]), int(model.x_slot[i]))
        if key not in members:
            members[key] = np.flatnonzero(model.lot_rep[key[0]] == key[1])
        start = used.get(key, 0)
        take = members[key][start : start + int(x[i])]
        if len(take) < x[i]:
            raise MilpError(f"lot group {key} ships {int(x[i])} lots past its {len(members[key])}: a model bug")
        out[key[0], take] = model.x_choice[i]
        used[key] = start + int(x[i])
    return out


def _solution(model: DispatchModel, values, status: str, bound: float, seconds: float, rounds: int) -> Solution:
    net, T = model.net, model.data.days
    lot_choice = np.zeros((T, net.n_lots), dtype=np.int64)
    transfer_choice = np.zeros((T, net.L * net.K), dtype=np.int64)
    found = values is not None
    if not found:  # a time limit before any incumbent: the do-nothing plan (always feasible in the env)
        values = np.zeros(model.n_cols)
    x = np.maximum(np.rint(values[model.x_cols]), 0).astype(np.int64)
    y = np.rint(values[model.y_cols]) > 0.5
    lot_choice[:] = _lot_choices(model, x)
    transfer_choice[model.y_day[y], model.y_slot[y]] = model.y_level[y]
    rounded = values.copy()
    rounded[model.x_cols] = x
    rounded[model.y_cols] = y
    terms = {name: float(model.term_coef[name] @ rounded + model.term_const[name]) for name in TERM_NAMES}
    inv = np.rint(values[model.inv_cols]).astype(np.int64)
    t, w, k = model.e_index
    model_eq5 = terms["eq5_imbalance"]
    terms["eq5_imbalance"] = float(eq5_value(model.lam, net.target_stock[w, k].astype(np.float64), inv[t, w, k]).sum())
    objective = (
        terms["eq2_allocation_revenue"]
        - terms["eq1_route_cost"]
        - terms["eq4_delay_penalty"]
        - terms["eq5_imbalance"]
        - terms["lost_sales"]
    )
    if not found:
        bound = max(bound, objective)
        objective = float("nan")  # filled by the caller from a replay of the do-nothing plan
    bound = max(bound, objective) if np.isfinite(objective) else bound
    gap = (bound - objective) / max(abs(objective), 1e-9) if np.isfinite(objective) else float("inf")
    return Solution(
        status=status, objective=objective, bound=bound, gap=float(gap), seconds=seconds, cut_rounds=rounds,
        terms=terms, lot_choice=lot_choice, transfer_choice=transfer_choice, inv=inv, model_eq5=model_eq5,
        found_plan=found,
    )  # fmt: skip
