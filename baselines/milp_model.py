"""The one MILP builder: the day rules of ``envs/dynamics.py`` as a HiGHS model, for all three env ids.

Both MILP baselines use it: the hindsight MILP feeds it the episode's realization, the
rolling-horizon policy a forecast built from what a dispatcher knows (both in
:mod:`baselines.plan_input`). Build (:func:`build_model`, here) and solve
(:func:`baselines.milp_solve.solve_model`) are separate. Every coefficient comes from the
compiled network and its prices from :mod:`envs.reward`, the module the env reads too.

Sets: planned days ``t`` (0 = the first planned day), warehouses ``w``, SKUs ``k``, lot
slots ``s`` (order ``(r, k, j)``), the ``c``-th delivery lane of a slot's region, transfer
slots ``(l, k)`` and their quantity levels ``v``.

Variables (one named block per family, columns created only where the env could act):

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
  exact at integers; the cuts are added lazily by the solver until none is violated;
* with free routing, a transfer that arrives after the last planned day and costs more than any Eq.5 gain at its
  origin is fixed to 0 (dropping it keeps every other action feasible and loses nothing);
* lot-sizing (l,S) rows on transfer arrivals (:func:`_transfer_cover_rows`) hold for every integer plan, so they
  change no optimum; they cut fractional plans that send part of a large level, which halves a SKU block's solve
  (the rolling policy builds without them: its solves stop at a gap, and a tighter bound stops them sooner);
* the capacity rows are the only rows that couple SKUs (``DispatchModel.capacity_rows``): the hindsight
  solver first solves the SKUs apart (:func:`baselines.milp_solve.solve_model`, ``decompose=True``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import highspy
import numpy as np

from baselines.plan_input import PlanInput
from envs.layout import ActionLayout, action_layout
from envs.network import Network
from envs.reward import TERM_NAMES, imbalance_per_pair, signed_sum, transfer_revenue

INF = highspy.kHighsInf
MODEL_VERSION = 2  # bump when the MILP changes what a solved plan means (cache entries and answer-key rows name it)
EQ5_CUT_MODES = ("lazy", "all")


class MilpError(RuntimeError):
    """The solver ended without a usable plan (infeasible, unbounded, error): a bug, never a tolerance."""


def eq5_value(net: Network, target: np.ndarray, on_hand: np.ndarray) -> np.ndarray:
    """Eq.5 of pairs with ``target > 0``, elementwise (USD): the env's formula with the network's lambda."""
    return imbalance_per_pair(net.imbalance_lambda, target, on_hand)


def eq5_secant(lam: float, target: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f(i), f(i+1) - f(i))`` of Eq.5 (lambda ``lam``) at integer ``segment`` i, elementwise: the cut
    ``e >= f(i) + slope (inv - i)`` is exact at the integers i and i + 1 and below ``f`` at every other integer
    (f is convex)."""
    f0 = imbalance_per_pair(lam, target, segment.astype(np.float64))
    return f0, imbalance_per_pair(lam, target, segment + 1.0) - f0


# ------------------------------------------------------------------ column and row stores
class _Columns:
    """Column store: named blocks of columns, each with bounds, integrality and its coefficient in each term."""

    def __init__(self) -> None:
        self.ids: dict[str, np.ndarray] = {}
        self.lower: dict[str, np.ndarray] = {}
        self.upper: dict[str, np.ndarray] = {}
        self.integer: dict[str, np.ndarray] = {}
        self.terms: dict[str, dict[str, np.ndarray]] = {}  # block -> term -> coefficients
        self.n = 0

    def add(self, block: str, count: int, lower, upper, integer: bool, **terms) -> np.ndarray:
        if block in self.ids:
            raise ValueError(f"column block {block!r} exists")
        unknown = set(terms) - set(TERM_NAMES)
        if unknown:
            raise ValueError(f"unknown reward terms {sorted(unknown)}; allowed: {list(TERM_NAMES)}")
        self.lower[block] = np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,))
        self.upper[block] = np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,))
        self.integer[block] = np.full(count, integer)
        self.terms[block] = {
            name: np.broadcast_to(np.asarray(terms.get(name, 0.0), dtype=np.float64), (count,)) for name in TERM_NAMES
        }
        self.ids[block] = np.arange(self.n, self.n + count)
        self.n += count
        return self.ids[block]

    def stack(self, what: dict[str, np.ndarray]) -> np.ndarray:
        """One per-block array (e.g. ``self.upper``) as one per-column array, blocks in the order they were added."""
        return np.concatenate([what[b] for b in self.ids]) if self.ids else np.zeros(0)

    def term(self, name: str) -> np.ndarray:
        """Coefficient of every column in reward term ``name``."""
        return np.concatenate([self.terms[b][name] for b in self.ids]) if self.ids else np.zeros(0)


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

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.n:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self.lower), np.concatenate(self.upper)

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = np.concatenate(self.r) if self.r else np.zeros(0, dtype=np.int64)
        c = np.concatenate(self.c) if self.c else np.zeros(0, dtype=np.int64)
        v = np.concatenate(self.v) if self.v else np.zeros(0)
        order = np.lexsort((c, r))
        r, c, v = r[order], c[order], v[order]
        start = np.searchsorted(r, np.arange(self.n + 1)).astype(np.int32)
        return start, c.astype(np.int32), v


# ------------------------------------------------------------------ the built model
@dataclass
class DispatchModel:
    """A built model: the HiGHS instance plus the index arrays that map columns back to env actions."""

    net: Network
    data: PlanInput
    layout: ActionLayout
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
    cover_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # _transfer_cover_rows
    cut_segments: set = field(default_factory=set)  # (e column, i) of every Eq.5 cut in the model
    build_seconds: float = 0.0

    @property
    def decisions(self) -> str:
        return self.layout.decisions

    def objective_coef(self) -> np.ndarray:
        """Return per column: the reward's signed sum of the term coefficients (``eq2 - eq1 - eq4 - eq5 - lost``)."""
        return signed_sum(self.term_coef)

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

    def add_eq5_cuts(self, e_ids: np.ndarray, segments: np.ndarray) -> int:
        """Add ``e >= f(i) + (f(i+1) - f(i)) (inv - i)`` for each (e column position, segment i) not yet present."""
        pairs = ((int(a), int(b)) for a, b in zip(e_ids, segments, strict=True))
        keep = [p for p in dict.fromkeys(pairs) if p not in self.cut_segments]
        if not keep:
            return 0
        self.cut_segments.update(keep)
        pos, seg = np.array(keep).T
        t, w, k = (ix[pos] for ix in self.e_index)
        f0, slope = eq5_secant(self.net.imbalance_lambda, self.net.target_stock[w, k].astype(np.float64), seg)
        n = len(seg)
        # e[t,w,k] - slope * inv[t,w,k] >= f(i) - slope * i
        start = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
        index = np.stack([self.e_cols[pos], self.inv_cols[t, w, k]], axis=1).ravel().astype(np.int32)
        value = np.stack([np.ones(n), -slope], axis=1).ravel()
        self.highs.addRows(n, f0 - slope * seg, np.full(n, INF), len(index), start, index, value)
        self.n_rows += n
        return n


# ------------------------------------------------------------------ building, section by section
@dataclass
class _Draft:
    """What the sections of :func:`build_model` share while the model is being written."""

    net: Network
    data: PlanInput
    layout: ActionLayout
    cols: _Columns = field(default_factory=_Columns)
    rows: _Rows = field(default_factory=_Rows)
    lot: dict[str, np.ndarray] = field(default_factory=dict)  # the x block: day, slot, choice, lane, size, sku, wh
    transfer: dict[str, np.ndarray] = field(default_factory=dict)  # the y block: day, slot, level, lane, sku, q, ...
    stock: dict[str, np.ndarray] = field(default_factory=dict)  # bounds: inbound, future_inbound, position_ub, ub
    lot_rep: np.ndarray | None = None
    lot_count: np.ndarray | None = None
    lost_const: float = 0.0
    capacity_rows: list[int] = field(default_factory=list)
    cover_rows: list[int] = field(default_factory=list)

    @property
    def days(self) -> int:
        return self.data.days


def build_model(
    net: Network, data: PlanInput, decisions: str, eq5_cuts: str = "lazy", transfer_cover: bool = True
) -> DispatchModel:
    """Build the MILP of ``data`` for an env whose action holds ``decisions`` ("both", "routing", "transfers").

    ``eq5_cuts="all"`` adds every secant cut up front (exact with no loop, large), ``"lazy"`` a few
    around each target; the solver adds violated ones until none is left. ``transfer_cover`` adds the valid
    inequalities of :func:`_transfer_cover_rows` (the same integer optimum, a tighter LP).
    """
    layout = action_layout(net, decisions)  # raises on a bad decisions value
    if eq5_cuts not in EQ5_CUT_MODES:
        raise ValueError(f"eq5_cuts={eq5_cuts!r} is not allowed; allowed: {list(EQ5_CUT_MODES)}")
    t0 = time.perf_counter()
    draft = _Draft(net, data, layout)
    _lot_columns(draft)
    _transfer_columns(draft)
    _stock_bounds(draft)
    _fix_dominated_transfers(draft)
    inv_cols = draft.cols.add("inv", draft.days * net.W * net.K, 0.0, draft.stock["ub"].reshape(-1), False)
    inv_cols = inv_cols.reshape(draft.days, net.W, net.K)
    e_t, e_w, e_k = np.nonzero(np.broadcast_to(net.target_stock > 0, (draft.days, net.W, net.K)))
    e_cols = draft.cols.add("e", len(e_t), 0.0, INF, False, eq5_imbalance=np.ones(len(e_t)))
    _balance_rows(draft, inv_cols)
    _choice_rows(draft)
    _capacity_rows(draft, inv_cols)
    if transfer_cover:
        _transfer_cover_rows(draft, inv_cols)
    if not layout.routes:
        _home_rule_rows(draft, inv_cols)
    model = _assemble(draft, inv_cols, e_cols, (e_t, e_w, e_k))
    _initial_eq5_cuts(model, eq5_cuts)
    model.build_seconds = time.perf_counter() - t0
    return model


def _lot_columns(d: _Draft) -> None:
    """x[t, s, c]: lots of the group headed by slot s of day t shipped on choice c (lane open, lot non-empty)."""
    net, data = d.net, d.data
    table = net.lot_lane_table  # [S, C]
    lane_c = np.where(table >= 0, table, 0)
    allowed = (table >= 0)[None, :, :] & (data.lots > 0)[:, :, None] & data.delivery_open[:, lane_c]
    allowed[:, :, 0] = False
    if not d.layout.routes:  # the fixed rule of CrossBorderTransfer-v0: the home lane only
        allowed &= np.arange(table.shape[1])[None, None, :] == net.lot_home_choice[None, :, None]
    # identical lots (same day, region, SKU and size) are interchangeable when routing is free: one integer
    # column per (day, group, choice) counts the group's lots shipped on that lane (breaks the symmetry)
    d.lot_rep, d.lot_count = _lot_groups(data.lots, net.J, aggregate=d.layout.routes)
    allowed &= (d.lot_rep == np.arange(net.n_lots)[None, :])[:, :, None]
    day, slot, choice = np.nonzero(allowed)
    lane = table[slot, choice]
    size = data.lots[day, slot].astype(np.float64)
    sku = net.lot_sku[slot]
    d.lot = {"day": day, "slot": slot, "choice": choice, "lane": lane, "size": size, "sku": sku}
    d.lot["wh"] = net.dl_warehouse[lane]
    d.lot["cols"] = d.cols.add(
        "x", len(day), 0.0, d.lot_count[day, slot], True,
        eq1_route_cost=size * data.unit_route_cost[day, lane],
        eq2_allocation_revenue=size * net.unit_profit[sku],
        eq4_delay_penalty=size * data.unit_delay_penalty[day, lane],
        lost_sales=-size * net.lost_penalty[sku],
    )  # fmt: skip
    d.lost_const = float(np.sum(data.lots * net.lost_penalty[net.lot_sku][None, :]))  # every lot lost: x = 0


def _transfer_columns(d: _Draft) -> None:
    """y[t, l, k, v]: transfer slot (l, k) of day t sends level v (q_v > 0, lane open)."""
    net, data, K = d.net, d.data, d.net.K
    qty = net.transfer_qty_table  # [L*K, V]
    if d.layout.transfers and net.L:
        slot_lane = np.arange(net.L * K) // K
        ok = (qty > 0)[None, :, :] & data.transfer_open[:, slot_lane][:, :, None]
        ok &= net.transfer_level_valid[None, :, :]
        day, slot, level = np.nonzero(ok)
    else:
        day = slot = level = np.zeros(0, dtype=np.int64)
    lane, sku = slot // K, slot % K
    q = qty[slot, level].astype(np.float64)
    d.transfer = {"day": day, "slot": slot, "level": level, "lane": lane, "sku": sku, "q": q}
    d.transfer |= {"origin": net.tl_origin[lane], "dest": net.tl_destination[lane]}
    d.transfer["arrive"] = day + data.transfer_lead[day, lane]  # planned day of arrival (may be >= T')
    revenue = transfer_revenue(net, lane, q)
    d.transfer["cols"] = d.cols.add("y", len(day), 0.0, 1.0, True, eq2_allocation_revenue=revenue)


def _stock_bounds(d: _Draft) -> None:
    """Upper bounds on stock, used for inv's upper bound and as the tight big-M of the rules below."""
    net, data, T, W, K = d.net, d.data, d.days, d.net.W, d.net.K
    y = d.transfer
    inbound = np.zeros((max(len(data.inbound), T + 1), W, K), dtype=np.int64)
    inbound[: len(data.inbound)] = data.inbound
    future_inbound = inbound[::-1].cumsum(axis=0)[::-1]  # [t] = units in transit arriving on day >= t
    start_position = data.start_on_hand.sum(axis=1) + inbound[1:].sum(axis=(0, 2))  # [W]
    cum_supply = np.concatenate([[np.zeros(W)], np.cumsum(data.supply[1:].sum(axis=2), axis=0)])  # [T', W]
    # position never passes max(capacity, start position) except by supply (transfers must keep it within capacity)
    position_ub = np.maximum(net.capacity, start_position)[None, :] + cum_supply  # [T', W]
    max_in = np.zeros((T + 1, W, K))  # largest transfer units that can arrive on each day
    if len(y["day"]):
        day, slot, kq = _largest_levels(y)
        kl = slot // K
        arrive = day + data.transfer_lead[day, kl]
        inside = arrive < T
        np.add.at(max_in, (arrive[inside], net.tl_destination[kl][inside], slot[inside] % K), kq[inside])
    ub = np.zeros((T, W, K))
    ub[0] = data.start_on_hand
    for t in range(1, T):
        ub[t] = ub[t - 1] + data.supply[t] + inbound[t] + max_in[t]
        ub[t] = np.minimum(ub[t], position_ub[t][:, None])
    ub[0] = np.maximum(ub[0], 0)
    d.stock = {"inbound": inbound, "future_inbound": future_inbound, "position_ub": position_ub, "ub": ub}


def _fix_dominated_transfers(d: _Draft) -> None:
    """Dominance: a transfer that arrives after the last planned day only costs money and lowers its origin's
    stock. With free routing, dropping it keeps every other action feasible (more origin stock, less in transit)
    and changes only Eq.5 at the origin, by at most ``sum_t' max(0, f(ub) - f(ub - q))`` (f convex); if that
    cannot repay its cost, ``y = 0`` loses nothing. Not when the origin also receives transfers (its lower stock
    could make room for them) nor with the fixed routing rule (more stock ships more lots)."""
    y, net = d.transfer, d.net
    if not d.layout.routes or not len(y["day"]):
        return
    coef = d.cols.terms["y"]["eq2_allocation_revenue"]
    dominated = np.zeros(len(y["day"]), dtype=bool)
    receivers = set(np.asarray(net.tl_destination).tolist())
    target = net.target_stock.astype(np.float64)
    scored = net.imbalance_lambda > 0
    for j in np.flatnonzero(y["arrive"] >= d.days):
        o, k, q, t = int(y["origin"][j]), int(y["sku"][j]), float(y["q"][j]), int(y["day"][j])
        if o in receivers or coef[j] >= 0:
            continue
        gain = 0.0
        if target[o, k] > 0 and scored:
            ub = d.stock["ub"][t:, o, k]
            diff = eq5_value(net, target[o, k], ub) - eq5_value(net, target[o, k], np.maximum(ub - q, 0.0))
            gain = float(np.maximum(diff, 0.0).sum())
        dominated[j] = coef[j] + gain < 0
    if dominated.any():
        d.cols.upper["y"] = np.where(dominated, 0.0, d.cols.upper["y"])


def _balance_rows(d: _Draft, inv_cols: np.ndarray) -> None:
    """inv[t] = inv[t-1] + supply[t] + inbound[t] + arrivals(y) - sum n x - sum q y_out (day 0: from start_on_hand);
    inv >= 0 makes lots + transfers fit the stock."""
    data, x, y, T = d.data, d.lot, d.transfer, d.days
    inbound = d.stock["inbound"]
    rhs = np.concatenate([data.start_on_hand[None], data.supply[1:] + inbound[1:T]]).astype(np.float64)
    bal = d.rows.add(rhs.size, rhs.reshape(-1), rhs.reshape(-1)).reshape(rhs.shape)
    d.rows.entries(bal.reshape(-1), inv_cols.reshape(-1), 1.0)
    d.rows.entries(bal[1:].reshape(-1), inv_cols[:-1].reshape(-1), -1.0)
    d.rows.entries(bal[x["day"], x["wh"], x["sku"]], x["cols"], x["size"])
    d.rows.entries(bal[y["day"], y["origin"], y["sku"]], y["cols"], y["q"])
    a = y["arrive"] < T
    d.rows.entries(bal[y["arrive"][a], y["dest"][a], y["sku"][a]], y["cols"][a], -y["q"][a])


def _choice_rows(d: _Draft) -> None:
    """One choice per slot: sum_c x[t,s,c] <= 1 (an aggregated lot group: <= its number of lots), sum_v y <= 1."""
    x, y = d.lot, d.transfer
    blocks = ((x["day"], x["slot"], x["cols"], d.lot_count), (y["day"], y["slot"], y["cols"], None))
    for day, slot, ids, count in blocks:
        if len(ids):
            group, inverse = np.unique(np.stack([day, slot]), axis=1, return_inverse=True)
            r = d.rows.add(group.shape[1], -INF, 1.0 if count is None else count[group[0], group[1]])
            d.rows.entries(r[inverse.ravel()], ids, 1.0)


def _capacity_rows(d: _Draft, inv_cols: np.ndarray) -> None:
    """Capacity, on days a transfer may enter warehouse d:
    ``sum_k (inv[t,d,k] + out[t,d,k]) + sum_{t'<=t, t'+lead>t} q y_in[t',d] <= cap[d] - inbound(>t)[d]``
    (on hand after lots + everything in transit to d; when the position may already exceed capacity
    without a transfer, the row holds only if one enters: ``+ M u[t,d] <= ... + M``, ``y_in[t,d] <= u[t,d]``).
    The only rows that couple SKUs."""
    net, y, K = d.net, d.transfer, d.net.K
    future_inbound, position_ub = d.stock["future_inbound"], d.stock["position_ub"]
    for t, w in sorted({(int(a), int(b)) for a, b in zip(y["day"], y["dest"], strict=True)}):
        entering = np.flatnonzero((y["day"] == t) & (y["dest"] == w))
        in_transit = np.flatnonzero((y["dest"] == w) & (y["day"] <= t) & (y["arrive"] > t))
        leaving = np.flatnonzero((y["day"] == t) & (y["origin"] == w))
        room = float(net.capacity[w] - future_inbound[t + 1, w].sum())
        # lhs <= position_ub + (largest total entering today) - inbound(>t), so M = that - room
        big_m = 0.0
        if position_ub[t, w] > net.capacity[w]:
            big_m = float(position_ub[t, w] + _best_total(y["slot"][entering], y["q"][entering]))
            big_m -= float(future_inbound[t + 1, w].sum()) + room
        r = d.rows.add(1, -INF, room + big_m)
        d.capacity_rows.append(int(r[0]))
        d.rows.entries(np.repeat(r, K), inv_cols[t, w], 1.0)
        d.rows.entries(np.repeat(r, len(leaving)), y["cols"][leaving], y["q"][leaving])
        d.rows.entries(np.repeat(r, len(in_transit)), y["cols"][in_transit], y["q"][in_transit])
        if big_m > 0:
            u = d.cols.add(f"u[{t},{w}]", 1, 0.0, 1.0, True)
            d.rows.entries(r, u, big_m)
            link = d.rows.add(len(entering), -INF, 0.0)
            d.rows.entries(link, y["cols"][entering], 1.0)
            d.rows.entries(link, np.repeat(u, len(entering)), -1.0)


def _transfer_cover_rows(d: _Draft, inv_cols: np.ndarray) -> None:
    """Lot-sizing (l,S) inequalities on transfer arrivals, valid for every integer plan: for a destination ``w``,
    SKU ``k`` and day ``l``, ``sum_j (q_j - D(a_j, l))^+ y_j <= inv[l, w, k]`` over the transfers ``j`` that
    arrive at ``(w, k)`` on a day ``a_j <= l``, where ``D(a, l)`` (units) bounds what can leave ``(w, k)``'s stock
    on days ``a..l`` (every lot group with a lane from ``w``, whole, plus the largest level of every transfer out).

    Why they hold: let ``i`` be the earliest sent transfer whose term is positive. Stock only leaves by lots and
    transfers, so ``inv[l] >= inv[a_i - 1] + (units arriving on days a_i..l) - D(a_i, l) >= sum_{j sent, a_j >= a_i}
    q_j - D(a_i, l)``, and ``D`` shrinks as ``a`` grows, so this is at least the sum of the positive terms. The LP
    relaxation ships a fraction of a large level (paying that fraction of the lane's fixed cost) to get a few
    units; these rows make the leftover of such a level count as stock, the cut that closes most of a SKU
    block's LP gap (``bench/RESULTS.md``, "Transfer cover inequalities")."""
    x, y, T = d.lot, d.transfer, d.days
    if not len(y["day"]):
        return
    W, K = d.net.W, d.net.K
    out = np.zeros((T, W, K))  # the most units that can leave (w, k)'s stock on day t
    # every lot group whole, once per warehouse it has a lane from (its choices there share its lots)
    _, first = np.unique(np.stack([x["day"], x["slot"], x["wh"]]), axis=1, return_index=True)
    units = x["size"] * d.lot_count[x["day"], x["slot"]]
    np.add.at(out, (x["day"][first], x["wh"][first], x["sku"][first]), units[first])
    day, slot, q = _largest_levels(y)  # and every transfer slot out at its largest level
    np.add.at(out, (day, d.net.tl_origin[slot // K], slot % K), q)
    # D(a, l) = tail[a] - tail[l + 1], tail[a] = units that can leave on days a..T-1
    tail = np.concatenate([np.cumsum(out[::-1], axis=0)[::-1], np.zeros((1, W, K))])
    arriving = np.flatnonzero(y["arrive"] < T)
    for w, k in sorted({(int(y["dest"][j]), int(y["sku"][j])) for j in arriving}):
        into = arriving[(y["dest"][arriving] == w) & (y["sku"][arriving] == k)]
        a = y["arrive"][into]
        for l_day in range(int(a.min()), T):
            mine = into[a <= l_day]
            coef = y["q"][mine] - (tail[y["arrive"][mine], w, k] - tail[l_day + 1, w, k])
            keep = coef > 1e-9
            if not keep.any():
                continue
            r = d.rows.add(1, -INF, 0.0)
            d.cover_rows.append(int(r[0]))
            d.rows.entries(np.repeat(r, int(keep.sum())), y["cols"][mine[keep]], coef[keep])
            d.rows.entries(r, inv_cols[l_day, w, k], -1.0)


def _home_rule_rows(d: _Draft, inv_cols: np.ndarray) -> None:
    """CrossBorderTransfer-v0's rule: a home-lane lot ships whenever the stock left before it suffices.
    ``stock_start[t,w,k] - sum_{s'<s} n_s' x_s' - (n_s - 1) <= M_s x_s``, ``M_s = ub(stock_start) - n_s + 1``
    (x_s = 1 needs the stock: the balance row already makes every prefix fit)."""
    data, x, y = d.data, d.lot, d.transfer
    inbound, ub = d.stock["inbound"], d.stock["ub"]
    arrivals: dict[tuple[int, int, int], list[int]] = {}
    for j in np.flatnonzero(y["arrive"] < d.days):
        arrivals.setdefault((int(y["arrive"][j]), int(y["dest"][j]), int(y["sku"][j])), []).append(int(j))
    order = np.lexsort((x["slot"], x["sku"], x["wh"], x["day"]))
    keys = list(zip(x["day"][order].tolist(), x["wh"][order].tolist(), x["sku"][order].tolist(), strict=True))
    group_start = 0
    for pos, i in enumerate(order):
        if pos and keys[pos] != keys[pos - 1]:
            group_start = pos
        t, w, k = keys[pos]
        prefix = order[group_start:pos]
        big_m = ub[t, w, k] - x["size"][i] + 1
        if big_m <= 0:
            continue  # the stock can never reach n_s: the lot never ships, and balance forces x_s = 0
        const = float(data.start_on_hand[w, k]) if t == 0 else float(data.supply[t, w, k] + inbound[t, w, k])
        r = d.rows.add(1, -INF, x["size"][i] - 1 - const)
        if t > 0:
            d.rows.entries(r, inv_cols[t - 1, w, k], 1.0)
            into = np.array(arrivals.get((t, w, k), []), dtype=np.int64)
            d.rows.entries(np.repeat(r, len(into)), y["cols"][into], y["q"][into])
        d.rows.entries(np.repeat(r, len(prefix)), x["cols"][prefix], -x["size"][prefix])
        d.rows.entries(r, x["cols"][i], -big_m)


def _assemble(d: _Draft, inv_cols: np.ndarray, e_cols: np.ndarray, e_index: tuple) -> DispatchModel:
    """Pass the model to HiGHS in one call (maximize the return) and keep the maps back to env actions."""
    cols, rows = d.cols, d.rows
    term_coef = {name: cols.term(name) for name in TERM_NAMES}
    lower, upper, integer = cols.stack(cols.lower), cols.stack(cols.upper), cols.stack(cols.integer).astype(bool)
    start, index, value = rows.csr()
    row_lower, row_upper = rows.bounds()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    status = h.passModel(
        cols.n, rows.n, len(index), int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMaximize), -d.lost_const,
        signed_sum(term_coef), lower, upper, row_lower, row_upper, start, index, value, integer.astype(np.int32),
    )  # fmt: skip
    if status == highspy.HighsStatus.kError:
        raise MilpError(f"HiGHS rejected the model: {status}")
    x, y = d.lot, d.transfer
    return DispatchModel(
        net=d.net, data=d.data, layout=d.layout, highs=h, n_cols=cols.n, n_rows=rows.n,
        n_integers=int(integer.sum()), term_coef=term_coef,
        term_const={name: (d.lost_const if name == "lost_sales" else 0.0) for name in TERM_NAMES},
        x_cols=x["cols"], x_day=x["day"], x_slot=x["slot"], x_choice=x["choice"],
        lot_rep=d.lot_rep, lot_count=d.lot_count,
        y_cols=y["cols"], y_day=y["day"], y_slot=y["slot"], y_level=y["level"],
        inv_cols=inv_cols, e_cols=e_cols, e_index=e_index, inv_upper=d.stock["ub"],
        capacity_rows=np.array(d.capacity_rows, dtype=np.int64), cover_rows=np.array(d.cover_rows, dtype=np.int64),
    )  # fmt: skip


def _initial_eq5_cuts(model: DispatchModel, mode: str) -> None:
    """Eq.5 cuts: every integer segment [i, i+1] below the bound (``"all"``), or a few around the target."""
    e_t, e_w, e_k = model.e_index
    ub = model.inv_upper[e_t, e_w, e_k].astype(np.int64)
    target = model.net.target_stock[e_w, e_k]
    if mode == "all":
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


def _largest_levels(y: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(day, slot, q)`` of the y block: each (day, transfer slot) once, with its largest level (units)."""
    best: dict[tuple[int, int], float] = {}
    for key, q in zip(zip(y["day"].tolist(), y["slot"].tolist(), strict=True), y["q"].tolist(), strict=True):
        best[key] = max(best.get(key, 0.0), q)
    keys = np.array(list(best), dtype=np.int64).reshape(-1, 2)
    return keys[:, 0], keys[:, 1], np.array(list(best.values()), dtype=np.float64)


def _best_total(slots: np.ndarray, q: np.ndarray) -> float:
    """Largest total of one level per slot (the most units that can enter in one day)."""
    best: dict[int, float] = {}
    for s, v in zip(slots, q, strict=True):
        best[int(s)] = max(best.get(int(s), 0.0), float(v))
    return sum(best.values())
