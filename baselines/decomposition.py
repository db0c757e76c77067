"""Branch-and-price over SKU blocks: the dispatch MILP solved exactly through its structure.

Without its capacity rows the model of :mod:`baselines.milp_model` is one independent problem per SKU, a
*block*: every column (lots, transfers, stock, Eq.5) and every other row (balance, one choice per slot, the
fixed routing rule, Eq.5 cuts) belongs to one SKU. The capacity rows ``sum_k A_k x_k <= b`` (a warehouse's
inventory position, all SKUs together; ``DispatchModel.capacity_rows``) are the only coupling. Dantzig-Wolfe:

* **master**: a convex combination of known plans (*columns*) per block under the capacity rows; its LP duals
  ``mu >= 0`` price capacity;
* **pricing**: each block is a MILP ``max (c_k - mu A_k) x_k`` over its own rows, solved by HiGHS or SCIP
  (:data:`baselines.milp_solve.SOLVERS`), the blocks in parallel through an execution backend
  (:mod:`evaluation.backends`); the Lagrangian bound ``offset + mu b + sum_k V_k(mu)`` holds for *any*
  ``mu >= 0`` with ``V_k`` the block solver's dual bound, so every bound here is valid whether a block solve
  finished or not (duals are smoothed towards the best ones seen, Wentges' stabilization). The root prices at
  zero duals first (the SKU bound), then at the capacity duals of the whole model's LP relaxation, which lands
  next to the best duals in one round; far from the bound, blocks are priced only to a share of the distance
  left (``LOOSE_PRICING``), exactly once that stalls;
* **branching** on a block's capacity usage at one capacity row (``A_ik x_k <= v`` or ``>= v + 1``: usage is
  an integer, so the two children partition the block's plans), best bound first; the largest bound among the
  open and the closed nodes bounds the optimum. A child is first bounded with its parent's duals, re-solving
  only the branched block;
* **plans**: after every pricing round, the master as an integer program over every column found (a choice of
  one column per block that satisfies the capacity rows is a plan of the whole model) and the whole model
  restricted near the master's mix (:meth:`_Search.restricted_plan`), so that a good plan exists early and the
  bound can stop column generation as soon as it is within the gap. :func:`branch_and_price` returns its x and
  y; the caller evaluates it exactly and replays it (the contract tests).

Eq.5 is convex in integer stock: a block solve adds violated secant cuts until its plan's exact value is within
the pricing tolerance of the block's bound; the coordinator keeps each block's cuts for its next solves.

Determinism: a pricing call is a pure function of (block, duals, branching rows, cuts, warm start, tolerance)
and results are folded in block order, so one worker or several, local or Ray, give the same plan and bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import highspy
import numpy as np

from baselines.milp_model import INF, DispatchModel, eq5_secant
from baselines.solvers import SOLVERS
from envs.reward import imbalance_per_pair

BAND = 4  # Eq.5 segments added on each side of a violated one
MASTER_PENALTY = 1e6  # USD per unit of capacity or convexity violated by the master's artificial columns
RESTRICTED_NODES = 500  # node limit of the restricted whole-model heuristic (run after every pricing round)
CENTER_WEIGHT = 0.9  # Wentges weight of the centre once it is the relaxation's duals
LOOSE_PRICING = 0.05  # far from the bound, blocks are priced to this share of (bound - master value), in USD
# HiGHS options of a pricing solve. Its sub-MIP heuristics (RINS, RENS) took 2.2 of a block's 3.1 s on table1 seed
# 1008, and a pricing call starts from its block's previous plan anyway. Replaying the pricing calls of a whole
# search without them (and the other primal heuristics) took 100 s instead of 184 s (seed 1005) and 80 s instead
# of 146 s (seed 1008); without the root reduced-cost sub-MIP too, 78 s instead of 114 s and 84 s instead of 87 s
# (two at a time). Every bound is still within its tolerance (bench/RESULTS.md, "Pricing without heuristics").
PRICING_HIGHS_OPTIONS = {
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_feasibility_jump": False,
    "mip_heuristic_run_root_reduced_cost": False,
}


@dataclass(frozen=True)
class Block:
    """One SKU's MILP as plain arrays (picklable: a pricing worker builds its solver model from them).

    ``n`` columns (``cols``: their ids in the whole model), the block's rows in CSR over local column ids, and
    ``usage`` ``[n_cap, n]``: the coefficients of the capacity rows on the block's columns (dense: a few rows).
    Eq.5 pairs: ``inv``/``e`` local column ids, their target stock and the stock's upper bound.
    """

    k: int
    cols: np.ndarray
    cost: np.ndarray  # [n] objective coefficient (USD, the return's signed sum)
    lower: np.ndarray
    upper: np.ndarray
    integrality: np.ndarray  # [n] int32, HiGHS codes (0 continuous, 1 integer)
    row_start: np.ndarray
    row_index: np.ndarray
    row_value: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    usage: np.ndarray
    inv: np.ndarray
    e: np.ndarray
    target: np.ndarray
    inv_upper: np.ndarray
    imbalance_lambda: float

    @property
    def n(self) -> int:
        return len(self.cols)

    def exact(self, x: np.ndarray) -> np.ndarray:
        """``x`` with integer columns rounded and each ``e`` set to Eq.5 at the rounded stock (the env's value)."""
        out = np.where(self.integrality > 0, np.rint(x), x)
        stock = np.rint(out[self.inv])
        out[self.inv] = stock
        out[self.e] = imbalance_per_pair(self.imbalance_lambda, self.target, stock)
        return out


@dataclass(frozen=True)
class Decomposition:
    """The model as blocks plus the capacity rows ``sum_k usage_k x_k <= capacity`` and the objective's constant."""

    blocks: tuple[Block, ...]
    capacity: np.ndarray  # [n_cap] right-hand sides
    offset: float  # the return of the model = offset + sum_k cost_k . x_k
    n_cols: int


def decompose(model: DispatchModel) -> Decomposition | None:
    """Split ``model`` (as built, with its Eq.5 cuts so far) into SKU blocks; None when a column or a row other
    than a capacity row belongs to no single SKU (the ``u`` indicator of a warehouse that can be over capacity
    without a transfer: its rows couple SKUs too; such models are solved whole)."""
    lp = model.highs.getLp()
    net, n, m = model.net, model.n_cols, lp.num_row_
    col_sku = np.full(n, -1)
    col_sku[model.x_cols] = net.lot_sku[model.x_slot]
    col_sku[model.y_cols] = model.y_slot % net.K
    col_sku[model.inv_cols.reshape(-1)] = np.broadcast_to(np.arange(net.K), model.inv_cols.shape).reshape(-1)
    col_sku[model.e_cols] = model.e_index[2]
    if (col_sku < 0).any():
        return None
    a = lp.a_matrix_
    start, index, value = np.asarray(a.start_), np.asarray(a.index_), np.asarray(a.value_)
    if a.format_ == highspy.MatrixFormat.kRowwise:  # HiGHS keeps the format it was given until it needs another
        col_of, index = index, np.repeat(np.arange(m), np.diff(start))
    else:
        col_of = np.repeat(np.arange(n), np.diff(start))
    row_lo, row_hi = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
    is_cap = np.zeros(m, dtype=bool)
    is_cap[model.capacity_rows] = True
    highest, lowest = np.full(m, -1), np.full(m, np.iinfo(np.int64).max)
    np.maximum.at(highest, index, col_sku[col_of])
    np.minimum.at(lowest, index, col_sku[col_of])
    if ((highest != lowest) & (highest >= 0) & ~is_cap).any():
        return None
    cap_pos = np.full(m, -1)
    cap_pos[model.capacity_rows] = np.arange(len(model.capacity_rows))
    cost = np.asarray(lp.col_cost_)
    integrality = np.asarray([int(v) for v in lp.integrality_], dtype=np.int32) if len(lp.integrality_) else None
    t, w, k_of_e = model.e_index
    blocks = []
    for k in range(net.K):
        cols = np.flatnonzero(col_sku == k)
        local = np.full(n, -1)
        local[cols] = np.arange(len(cols))
        entry = col_sku[col_of] == k
        r, c, v = index[entry], local[col_of[entry]], value[entry]
        own = ~is_cap[r]
        order = np.lexsort((c[own], r[own]))
        rows = np.unique(r[own])
        rr = np.searchsorted(rows, r[own][order])
        usage = np.zeros((len(model.capacity_rows), len(cols)))
        cap_entry = is_cap[r]
        usage[cap_pos[r[cap_entry]], c[cap_entry]] = v[cap_entry]
        pairs = np.flatnonzero(k_of_e == k)
        blocks.append(
            Block(
                k=k, cols=cols, cost=cost[cols].copy(),
                lower=np.asarray(lp.col_lower_)[cols].copy(), upper=np.asarray(lp.col_upper_)[cols].copy(),
                integrality=(integrality[cols] if integrality is not None else np.zeros(len(cols), dtype=np.int32)),
                row_start=np.searchsorted(rr, np.arange(len(rows) + 1)).astype(np.int32),
                row_index=c[own][order].astype(np.int32), row_value=v[own][order],
                row_lower=row_lo[rows].copy(), row_upper=row_hi[rows].copy(), usage=usage,
                inv=local[model.inv_cols[t[pairs], w[pairs], k]], e=local[model.e_cols[pairs]],
                target=net.target_stock[w[pairs], k].astype(np.float64),
                inv_upper=model.inv_upper[t[pairs], w[pairs], k],
                imbalance_lambda=float(net.imbalance_lambda),
            )
        )  # fmt: skip
    capacity = row_hi[model.capacity_rows].copy()
    return Decomposition(blocks=tuple(blocks), capacity=capacity, offset=float(lp.offset_), n_cols=n)


# ------------------------------------------------------------------ pricing (a pure function: runs anywhere)
@dataclass(frozen=True)
class PriceRequest:
    """Solve block ``k``: ``max (cost - duals @ usage) x`` under ``branch`` rows ``(capacity row, lo, hi)`` on its
    usage, with the Eq.5 cuts ``cuts`` ``[m, 2]`` (pair, segment) already known, to ``abs_gap`` (USD)."""

    k: int
    duals: np.ndarray
    branch: tuple[tuple[int, float, float], ...]
    cuts: np.ndarray
    start: np.ndarray | None
    abs_gap: float
    solver: str = "highs"
    threads: int | None = None
    time_limit: float | None = None


@dataclass(frozen=True)
class PriceResult:
    status: str  # "optimal" (within abs_gap), "time_limit" or "infeasible" (the branch rows exclude every plan)
    bound: float  # dual bound of the priced objective (-inf if infeasible)
    x: np.ndarray | None  # the plan found (exact Eq.5), block columns
    value: float  # cost . x: the plan's share of the return (USD)
    usage: np.ndarray | None  # [n_cap] usage @ x
    new_cuts: np.ndarray  # [m, 2] Eq.5 cuts this call added
    seconds: float = 0.0  # wall time of the call (schedules the next round; never changes a result)


def price(decomposition: Decomposition, request: PriceRequest) -> PriceResult:
    """One pricing solve (see :class:`PriceRequest`), adding violated Eq.5 cuts until the exact plan is within
    ``abs_gap`` of the bound. ``decomposition`` first: the signature of a backend's ``work(context, item)``."""
    t0 = time.perf_counter()
    result = _price(decomposition, request)
    return replace(result, seconds=time.perf_counter() - t0)


def _price(decomposition: Decomposition, request: PriceRequest) -> PriceResult:
    block = decomposition.blocks[request.k]
    cost = block.cost - request.duals @ block.usage
    h = _block_highs(block, cost, request.cuts, request.branch)
    run = SOLVERS[request.solver]
    t0 = time.perf_counter()
    added: list[np.ndarray] = []
    known = {(int(p), int(s)) for p, s in request.cuts}
    start = request.start
    while True:
        left = None if request.time_limit is None else max(request.time_limit - (time.perf_counter() - t0), 1e-3)
        status, x, bound = run(h, left, 0.0, None, request.threads, start, abs_gap=request.abs_gap,
                               infeasible_ok=True)  # fmt: skip
        if status == "infeasible":
            return PriceResult("infeasible", -np.inf, None, 0.0, None, _cut_array(added))
        if x is None:
            return PriceResult(status, bound, None, 0.0, None, _cut_array(added))
        exact = block.exact(x)
        priced = float(cost @ exact)
        if status != "optimal" or bound - priced <= request.abs_gap * (1 + 1e-9) + 1e-9:
            return PriceResult(status, max(bound, priced), exact, float(block.cost @ exact), block.usage @ exact,
                               _cut_array(added))  # fmt: skip
        cuts = _violated(block, x, known)
        if not len(cuts):  # the solver's tolerance: e sits below a cut it already has
            return PriceResult(status, max(bound, priced), exact, float(block.cost @ exact), block.usage @ exact,
                               _cut_array(added))  # fmt: skip
        known.update((int(p), int(s)) for p, s in cuts)
        added.append(cuts)
        _add_cut_rows(h, block, cuts)
        start = exact


def _cut_array(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)


def _violated(block: Block, x: np.ndarray, known: set) -> np.ndarray:
    """Eq.5 pairs whose ``e`` is below Eq.5 at the plan's (integer) stock, with the segment that cuts them off."""
    stock = np.rint(x[block.inv])
    exact = imbalance_per_pair(block.imbalance_lambda, block.target, stock)
    bad = np.flatnonzero(x[block.e] < exact - 1e-7 * (1.0 + exact))
    # a band of segments around the violated one: the next solve's stock is often a few units away
    band = np.arange(-BAND, BAND + 1)
    pairs = np.repeat(bad, len(band))
    seg = (stock[bad][:, None] + band[None, :]).ravel()
    seg = np.clip(seg, 0, np.maximum(block.inv_upper[pairs] - 1, 0)).astype(np.int64)
    fresh = ((int(p), int(s)) for p, s in zip(pairs, seg, strict=True))
    cuts = [c for c in dict.fromkeys(fresh) if c not in known]
    return np.array(cuts, dtype=np.int64).reshape(-1, 2)


def _add_cut_rows(h: highspy.Highs, block: Block, cuts: np.ndarray) -> None:
    """``e - slope inv >= f(i) - slope i`` for each (pair, segment i)."""
    if not len(cuts):
        return
    pair, seg = cuts[:, 0], cuts[:, 1]
    f0, slope = eq5_secant(block.imbalance_lambda, block.target[pair], seg)
    n = len(pair)
    index = np.stack([block.e[pair], block.inv[pair]], axis=1).ravel().astype(np.int32)
    value = np.stack([np.ones(n), -slope], axis=1).ravel()
    h.addRows(n, f0 - slope * seg, np.full(n, INF), len(index), np.arange(0, 2 * n, 2, dtype=np.int32), index, value)


def _block_highs(block: Block, cost: np.ndarray, cuts: np.ndarray, branch) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for name, value in PRICING_HIGHS_OPTIONS.items():
        h.setOptionValue(name, value)
    h.passModel(
        block.n, len(block.row_lower), len(block.row_index), int(highspy.MatrixFormat.kRowwise),
        int(highspy.ObjSense.kMaximize), 0.0, cost, block.lower, block.upper, block.row_lower, block.row_upper,
        block.row_start, block.row_index, block.row_value, block.integrality,
    )  # fmt: skip
    _add_cut_rows(h, block, np.asarray(cuts, dtype=np.int64).reshape(-1, 2))
    for row, lo, hi in branch:
        nz = np.flatnonzero(block.usage[row])
        h.addRow(lo, hi, len(nz), nz.astype(np.int32), block.usage[row, nz])
    return h


# ------------------------------------------------------------------ the coordinator
@dataclass
class BranchAndPriceResult:
    status: str  # "optimal" (bound - objective <= mip_gap |objective|) or "time_limit"
    plan: list[np.ndarray] | None  # per block, the chosen column's values (block columns); None: no plan found
    objective: float  # offset + sum of the chosen columns' values (exact Eq.5); -inf without a plan
    bound: float  # upper bound on the optimum
    nodes: int = 0
    iterations: int = 0  # master LP solves
    pricing_calls: int = 0
    columns: int = 0
    root_bound: float = np.inf  # the Dantzig-Wolfe bound of the root node
    first_bound: float = np.inf  # the bound of the blocks alone (mu = 0): the SKU bound
    log: list[str] = field(default_factory=list)  # a line per pricing round: time, node, master, bounds, plan


@dataclass
class _Node:
    bound: float
    order: int  # creation order: the tie-break that keeps the search deterministic
    branch: tuple[tuple[int, int, float, float], ...]  # (block, capacity row, lo, hi)
    duals: np.ndarray | None = None  # the parent's final duals and its blocks' bounds at them
    block_bounds: np.ndarray | None = None
    branched: int = -1


class _Pool:
    """The columns found so far, per block: value (USD), usage [n_cap], plan (block columns)."""

    def __init__(self, n_blocks: int) -> None:
        self.value: list[list[float]] = [[] for _ in range(n_blocks)]
        self.usage: list[list[np.ndarray]] = [[] for _ in range(n_blocks)]
        self.plan: list[list[np.ndarray]] = [[] for _ in range(n_blocks)]
        self.keys: list[dict[bytes, int]] = [{} for _ in range(n_blocks)]

    def add(self, k: int, value: float, usage: np.ndarray, plan: np.ndarray) -> int:
        """The column's index in block ``k`` (added unless the same plan is there already)."""
        key = np.round(plan, 6).tobytes()
        if key not in self.keys[k]:
            self.keys[k][key] = len(self.value[k])
            self.value[k].append(value)
            self.usage[k].append(usage)
            self.plan[k].append(plan)
        return self.keys[k][key]

    def allowed(self, branch) -> list[tuple[int, int]]:
        """``(block, column)`` pairs that satisfy every branching row of ``branch`` on their block."""
        out = []
        for k in range(len(self.value)):
            rows = [(i, lo, hi) for kk, i, lo, hi in branch if kk == k]
            for p, use in enumerate(self.usage[k]):
                if all(lo - 1e-6 <= use[i] <= hi + 1e-6 for i, lo, hi in rows):
                    out.append((k, p))
        return out

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.value)


def branch_and_price(
    decomposition: Decomposition,
    mip_gap: float = 1e-4,
    time_limit: float | None = None,
    backend=None,
    solver: str = "highs",
    threads: int | None = None,
    start: list[np.ndarray] | None = None,
    max_nodes: int | None = None,
) -> BranchAndPriceResult:
    """Maximize the decomposed model to a relative gap ``mip_gap`` (see the module docstring).

    ``backend``: an :mod:`evaluation.backends` backend whose ``map`` runs the pricing calls (None: this process,
    one block after the other). ``start``: a plan per block to seed the columns (e.g. doing nothing).
    ``time_limit`` (seconds) or ``max_nodes`` stop the search with the best plan and a valid bound.
    """
    search = _Search(decomposition, mip_gap, time_limit, backend, solver, threads)
    for k, plan in enumerate(start or []):
        search.add_column(k, decomposition.blocks[k].exact(plan))
    return search.run(max_nodes)


class _Search:
    """The state of one branch-and-price run: columns, cuts, warm starts, the incumbent and the node queue."""

    def __init__(self, decomposition: Decomposition, mip_gap, time_limit, backend, solver, threads) -> None:
        self.d = decomposition
        self.K, self.n_cap = len(decomposition.blocks), len(decomposition.capacity)
        self.mip_gap, self.time_limit, self.backend = mip_gap, time_limit, backend
        self.solver, self.threads = solver, threads
        self.t0 = time.perf_counter()
        self.pool = _Pool(self.K)
        self.cuts = [np.zeros((0, 2), dtype=np.int64) for _ in range(self.K)]
        self.last: list[np.ndarray | None] = [None] * self.K  # each block's latest plan: its next warm start
        self.seconds = np.zeros(self.K)  # each block's latest pricing time: the longest are sent first
        self.best, self.incumbent = -np.inf, None
        self.result = BranchAndPriceResult("time_limit", None, -np.inf, np.inf)

    # -- small helpers
    def time_left(self) -> float:
        """Seconds left of the time limit (negative once it has run out; inf without one)."""
        return np.inf if self.time_limit is None else self.time_limit - (time.perf_counter() - self.t0)

    def out_of_time(self) -> bool:
        return self.time_left() <= 0

    def limit_time(self, h: highspy.Highs) -> None:
        """Under a time limit, stop a whole-model solve (relaxation, restricted heuristic) when it runs out."""
        if self.time_limit is not None:
            h.setOptionValue("time_limit", max(self.time_left(), 1e-3))

    def prunable(self, bound: float) -> bool:
        return bool(np.isfinite(self.best) and bound <= self.best + self.mip_gap * abs(self.best))

    def add_column(self, k: int, x: np.ndarray) -> int:
        block = self.d.blocks[k]
        return self.pool.add(k, float(block.cost @ x), block.usage @ x, x)

    def try_incumbent(self, choice: list[int]) -> None:
        total = self.d.offset + sum(self.pool.value[k][p] for k, p in enumerate(choice))
        use = sum(self.pool.usage[k][p] for k, p in enumerate(choice))
        if np.all(use <= self.d.capacity + 1e-6) and total > self.best + 1e-9:
            self.best, self.incumbent = total, list(choice)

    def price(self, duals: np.ndarray, branch, which: list[int], reference: float, slack: float = 0.0
              ) -> dict[int, tuple]:  # fmt: skip
        """Solve blocks ``which`` at ``duals`` under ``branch``: ``{k: (result, column index or None)}``, each to a
        tenth of the allowed gap shared between the blocks, or to its share of ``slack`` (USD) when larger."""
        scale = abs(self.best) if np.isfinite(self.best) else abs(reference)
        abs_gap = max(1e-7, 0.1 * self.mip_gap * scale / self.K, slack / self.K)

        # under a time limit each block gets its share of the time left (the blocks a worker runs one after the
        # other share it), so that one slow block cannot take the whole budget and leave the others unpriced (on
        # `large` the first block took all of a 200 s limit); a block stopped early still gives a valid bound
        def request(k: int, turns: int) -> PriceRequest:
            rows = tuple((i, lo, hi) for kk, i, lo, hi in branch if kk == k)
            left = None if self.time_limit is None else max(self.time_left() / max(turns, 1), 1e-3)
            return PriceRequest(k, duals, rows, self.cuts[k], self.last[k], abs_gap, self.solver, self.threads, left)

        if self.backend is None or len(which) <= 1:
            # one after the other: each gets the time left over the blocks still to price
            answers = {k: price(self.d, request(k, len(which) - i)) for i, k in enumerate(which)}
        else:
            # longest first (by each block's last time): 5 blocks on 2 workers then finish nearly together;
            # the order only schedules, the answers are folded in block order below
            order = sorted(which, key=lambda k: (-self.seconds[k], k))
            turns = -(-len(which) // max(1, int(getattr(self.backend, "workers", 1))))
            answers = {item.k: res for item, res in self.backend.map(price, self.d, [request(k, turns) for k in order])}
        out = {}
        for k in sorted(answers):  # fold in block order: the same state whatever order they finished in
            res = answers[k]
            self.result.pricing_calls += 1
            self.seconds[k] = res.seconds
            if len(res.new_cuts):
                self.cuts[k] = np.concatenate([self.cuts[k], res.new_cuts])
            column = None
            if res.x is not None:
                self.last[k] = res.x
                column = self.pool.add(k, res.value, res.usage, res.x)
            out[k] = (res, column)
        return out

    # -- the search
    def run(self, max_nodes: int | None) -> BranchAndPriceResult:
        result = self.result
        queue = [_Node(np.inf, 0, ())]
        created, closed = 1, -np.inf  # closed: the largest bound of a node closed without branching
        while queue and not (self.out_of_time() or (max_nodes is not None and result.nodes >= max_nodes)):
            queue.sort(key=lambda nd: (-nd.bound, nd.order))
            node = queue.pop(0)
            if self.prunable(node.bound):
                closed = max(closed, node.bound)
                continue
            result.nodes += 1
            bound, duals, block_bounds = self.node_bound(node)
            if self.out_of_time() and not self.prunable(bound):
                node.bound = bound
                queue.append(node)  # unfinished: its bound stays open
                break
            if node.order == 0:
                result.root_bound = bound
            if self.prunable(bound) or bound == -np.inf:
                closed = max(closed, bound)
                continue
            # node_bound ran it after its last round, but its restricted heuristic added columns since
            choice = _master_integer(self.d, self.pool)  # any column of any node is a plan of its block
            if choice is not None:
                self.try_incumbent(choice)
            allowed = self.pool.allowed(node.branch)
            lp = _master(self.d, self.pool, allowed)
            if self.prunable(bound):
                closed = max(closed, bound)
                continue
            split = _branching(self.pool, allowed, lp)
            if split is None:  # every block's LP mix has one usage profile: no better than its best column
                closed = max(closed, bound)
                continue
            k, row, v = split
            for lo, hi in ((-INF, v), (v + 1, INF)):
                queue.append(_Node(bound, created, (*node.branch, (k, row, lo, hi)), duals, block_bounds, k))
                created += 1
        result.bound = max(max((nd.bound for nd in queue), default=-np.inf), closed, self.best)
        result.objective = self.best
        result.columns = self.pool.size
        if self.incumbent is not None:
            result.plan = [self.pool.plan[k][p] for k, p in enumerate(self.incumbent)]
            if not queue and result.bound - self.best <= self.mip_gap * abs(self.best) + 1e-9:
                result.status = "optimal"
        return result

    def restricted_plan(self, allowed, lp: _MasterLP) -> None:
        """A plan of the whole model near the master's LP mix (a primal heuristic, like RINS): every integer column
        on which a block's mixed plans agree is fixed, the rest (and the capacity rows) left to HiGHS, stopped
        after ``RESTRICTED_NODES`` nodes (a deterministic limit). Its blocks' plans join the columns."""
        lower = [b.lower.copy() for b in self.d.blocks]
        upper = [b.upper.copy() for b in self.d.blocks]
        for k, block in enumerate(self.d.blocks):
            plans = [
                self.pool.plan[kk][p] for (kk, p), w in zip(allowed, lp.weights, strict=True) if kk == k and w > 1e-6
            ]
            if not plans:
                continue
            stack = np.array(plans)
            agree = (block.integrality > 0) & np.all(stack == stack[0], axis=0)
            lower[k][agree] = upper[k][agree] = stack[0][agree]
        h, offsets = _whole_model(self.d, self.cuts, lower, upper)
        h.setOptionValue("mip_max_nodes", RESTRICTED_NODES)
        h.setOptionValue("mip_rel_gap", self.mip_gap)
        self.limit_time(h)
        h.run()
        if h.getInfo().primal_solution_status != 2:
            return
        x = np.asarray(h.getSolution().col_value)
        choice = []
        for k, block in enumerate(self.d.blocks):
            choice.append(self.add_column(k, block.exact(x[offsets[k] : offsets[k] + block.n])))
        self.try_incumbent(choice)

    def relaxation_duals(self) -> np.ndarray:
        """The capacity rows' duals in the LP relaxation of the whole model (with the Eq.5 cuts found so far).

        The master's first duals, from a handful of columns, are far from the best ones (on table1 seed 1001 the
        first Lagrangian bounds at them were 16,871, 12,417, 12,385 and 12,364, above the 12,352 of zero duals),
        and column generation spent most of its rounds getting close. These duals cost one LP (0.2 s there) and
        gave 12,349.66 in one round, next to the root's final 12,349.48."""
        d = self.d
        if self.n_cap == 0:
            return np.zeros(0)
        h, _ = _whole_model(d, self.cuts, [b.lower for b in d.blocks], [b.upper for b in d.blocks])
        h.changeColsIntegrality(h.getNumCol(), np.arange(h.getNumCol(), dtype=np.int32),
                                np.zeros(h.getNumCol(), dtype=np.uint8))  # fmt: skip
        self.limit_time(h)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return np.zeros(self.n_cap)
        row_dual = np.asarray(h.getSolution().row_dual)
        return np.maximum(row_dual[len(row_dual) - self.n_cap :], 0.0)  # the capacity rows come last

    def node_bound(self, node: _Node) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """Column generation at ``node``: ``(bound, duals, block bounds)`` (the duals of the best Lagrangian bound)."""
        result, K = self.result, self.K
        bound = node.bound
        center = node.duals if node.duals is not None else np.zeros(self.n_cap)
        center_bound, duals, block_bounds, alpha = np.inf, node.duals, node.block_bounds, 0.5
        if node.duals is not None and node.branched >= 0:  # a child: its parent's duals, the branched block again
            k = node.branched
            res, _ = self.price(node.duals, node.branch, [k], bound)[k]
            block_bounds = node.block_bounds.copy()
            block_bounds[k] = res.bound
            center_bound = _lagrangian(self.d, node.duals, block_bounds)  # smooth around it from the first round
            bound = min(bound, center_bound)
            if self.prunable(bound) or bound == -np.inf:
                return bound, None, None
        loose = True  # price far from the bound to a share of the distance left (exactly once it stalls)
        while not self.out_of_time():
            allowed = self.pool.allowed(node.branch)
            lp = _master(self.d, self.pool, allowed)
            result.iterations += 1
            relaxation_round = result.iterations == 2 and node.order == 0
            if result.iterations == 1:
                price_at = np.zeros(self.n_cap)  # the blocks alone: the SKU bound and each SKU's own best plan
            elif relaxation_round:
                price_at = self.relaxation_duals()  # near the best duals at once, where the master's start far off
            elif np.isfinite(center_bound):
                price_at = alpha * center + (1 - alpha) * lp.duals  # Wentges smoothing
            else:
                price_at = lp.duals
            slack = 0.0  # exact at zero duals (the SKU bound) and at the relaxation's (a bound near the best)
            if loose and result.iterations > 2 and np.isfinite(bound) and lp.artificial <= 1e-9:
                slack = LOOSE_PRICING * (bound - lp.value)
            answers = self.price(price_at, node.branch, list(range(K)), bound if np.isfinite(bound) else lp.value,
                                 slack)  # fmt: skip
            if any(res.status == "infeasible" for res, _ in answers.values()):
                return -np.inf, None, None  # a block has no plan within this node's branching rows
            bounds = np.array([answers[k][0].bound for k in range(K)])
            value = _lagrangian(self.d, price_at, bounds)
            if result.iterations == 1:
                result.first_bound = value
                if all(col is not None for _, col in answers.values()):
                    self.try_incumbent([answers[k][1] for k in range(K)])
            if value < center_bound:
                center, center_bound, duals, block_bounds = price_at, value, price_at, bounds
            if relaxation_round and value < result.first_bound:
                alpha = CENTER_WEIGHT
            bound = min(bound, value)
            choice = _master_integer(self.d, self.pool)  # a plan early lets the bound prune this node sooner
            if choice is not None:
                self.try_incumbent(choice)
            allowed = self.pool.allowed(node.branch)
            after = _master(self.d, self.pool, allowed)  # with this round's columns
            if not self.prunable(bound):  # and a plan near the master's new mix (0.1-0.2 s on table1)
                self.restricted_plan(allowed, after)
            result.log.append(f"{time.perf_counter() - self.t0:.1f}s node {node.order} master {lp.value:.2f} "
                              f"lagrangian {value:.2f} bound {bound:.2f} best {self.best:.2f}")  # fmt: skip
            if self.prunable(bound):
                break
            tol = self.mip_gap * abs(self.best if np.isfinite(self.best) else bound)
            if bound - lp.value <= max(0.05 * tol, 1e-9 * abs(lp.value)):
                break  # the master is as good as the bound: column generation is done here
            if (node.order > 0 and np.isfinite(self.best) and after.artificial <= 1e-9 and after.value > self.best + tol
                    and _branching(self.pool, allowed, after) is not None):  # fmt: skip
                # the node's LP bound is at least the master's value, above the incumbent: more rounds cannot
                # prune it, only branching can, and its mix can be split (the root goes on: its rounds also find
                # the plans)
                break
            improving = any(
                res.x is not None and res.value - lp.duals @ res.usage - lp.convexity[k] > 1e-7
                for k, (res, _) in answers.items()
            )
            if not improving:
                if slack > 0:
                    loose = False  # the loose solves may have missed an improving column: price exactly
                    continue
                if alpha > 0 and result.iterations > 1:
                    alpha = 0.0  # mispricing: the smoothed duals found nothing; price at the master's own
                    continue
                break
        return bound, duals, block_bounds


def _lagrangian(decomposition: Decomposition, duals: np.ndarray, block_bounds: np.ndarray) -> float:
    """``offset + duals . capacity + sum_k V_k``: an upper bound on the model's optimum for any duals >= 0."""
    return float(decomposition.offset + duals @ decomposition.capacity + block_bounds.sum())


@dataclass
class _MasterLP:
    value: float
    duals: np.ndarray  # [n_cap] >= 0
    convexity: np.ndarray  # [K]
    weights: np.ndarray  # [len(allowed)]
    artificial: float


def _master(decomposition: Decomposition, pool: _Pool, allowed) -> _MasterLP:
    """The restricted master LP over ``allowed`` columns, with artificial columns (cost ``MASTER_PENALTY``) that
    keep it feasible when the branching rows exclude every known column of a block."""
    K, n_cap = len(decomposition.blocks), len(decomposition.capacity)
    n = len(allowed)
    cost = np.concatenate([[pool.value[k][p] for k, p in allowed], np.full(n_cap + K, -MASTER_PENALTY)])
    usage = np.array([pool.usage[k][p] for k, p in allowed]).reshape(n, n_cap)
    rows, cols, vals = [], [], []
    nz_r, nz_c = np.nonzero(usage.T)
    rows.append(nz_r)
    cols.append(nz_c)
    vals.append(usage.T[nz_r, nz_c])
    rows.append(np.arange(n_cap))
    cols.append(n + np.arange(n_cap))
    vals.append(-np.ones(n_cap))
    block_of = np.array([k for k, _ in allowed], dtype=np.int64)
    rows.append(n_cap + block_of)
    cols.append(np.arange(n))
    vals.append(np.ones(n))
    rows.append(n_cap + np.arange(K))
    cols.append(n + n_cap + np.arange(K))
    vals.append(np.ones(K))
    h = _lp_from_triplets(cost, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                          np.concatenate([np.full(n_cap, -INF), np.ones(K)]),
                          np.concatenate([decomposition.capacity, np.ones(K)]))  # fmt: skip
    h.run()
    sol = h.getSolution()
    weights = np.asarray(sol.col_value)
    row_dual = np.asarray(sol.row_dual)
    return _MasterLP(
        value=decomposition.offset + float(h.getInfo().objective_function_value),
        duals=np.maximum(row_dual[:n_cap], 0.0),
        convexity=row_dual[n_cap:],
        weights=weights[:n],
        artificial=float(weights[n:].sum()),
    )


def _master_integer(decomposition: Decomposition, pool: _Pool) -> list[int] | None:
    """One column per block, the best total that satisfies the capacity rows (None if no choice does)."""
    K, n_cap = len(decomposition.blocks), len(decomposition.capacity)
    allowed = pool.allowed(())
    n = len(allowed)
    cost = np.array([pool.value[k][p] for k, p in allowed])
    usage = np.array([pool.usage[k][p] for k, p in allowed]).reshape(n, n_cap)
    nz_r, nz_c = np.nonzero(usage.T)
    block_of = np.array([k for k, _ in allowed], dtype=np.int64)
    h = _lp_from_triplets(
        cost, np.concatenate([nz_r, n_cap + block_of]), np.concatenate([nz_c, np.arange(n)]),
        np.concatenate([usage.T[nz_r, nz_c], np.ones(n)]), np.concatenate([np.full(n_cap, -INF), np.ones(K)]),
        np.concatenate([decomposition.capacity, np.ones(K)]), integer=True,
    )  # fmt: skip
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_max_nodes", 10_000)  # a deterministic limit: small set-partitioning models finish long before
    h.run()
    if h.getInfo().primal_solution_status != 2:
        return None
    weights = np.rint(np.asarray(h.getSolution().col_value))
    choice = [0] * K
    for (k, p), w in zip(allowed, weights, strict=True):
        if w > 0.5:
            choice[k] = p
    return choice


def _whole_model(d: Decomposition, cuts, lower, upper) -> tuple[highspy.Highs, np.ndarray]:
    """The whole model again from its blocks (their rows and Eq.5 cuts, and the capacity rows), with the given
    column bounds: ``(HiGHS model, offset of each block's columns)``."""
    offsets = np.concatenate([[0], np.cumsum([b.n for b in d.blocks])])
    n = int(offsets[-1])
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("random_seed", 0)
    cost = np.concatenate([b.cost for b in d.blocks])
    integrality = np.concatenate([b.integrality for b in d.blocks]).astype(np.int32)
    h.passModel(
        n, 0, 0, int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMaximize), 0.0, cost,
        np.concatenate(lower), np.concatenate(upper), np.zeros(0), np.zeros(0), np.zeros(1, dtype=np.int32),
        np.zeros(0, dtype=np.int32), np.zeros(0), integrality,
    )  # fmt: skip
    for k, b in enumerate(d.blocks):
        h.addRows(len(b.row_lower), b.row_lower, b.row_upper, len(b.row_index), b.row_start[:-1],
                  (b.row_index + offsets[k]).astype(np.int32), b.row_value)  # fmt: skip
        if len(cuts[k]):
            pair, seg = cuts[k][:, 0], cuts[k][:, 1]
            f0, slope = eq5_secant(b.imbalance_lambda, b.target[pair], seg)
            m = len(pair)
            index = (np.stack([b.e[pair], b.inv[pair]], axis=1).ravel() + offsets[k]).astype(np.int32)
            value = np.stack([np.ones(m), -slope], axis=1).ravel()
            h.addRows(m, f0 - slope * seg, np.full(m, INF), len(index), np.arange(0, 2 * m, 2, dtype=np.int32),
                      index, value)  # fmt: skip
    for i, cap in enumerate(d.capacity):
        cols = [np.flatnonzero(b.usage[i]) for b in d.blocks]
        index = np.concatenate([c + offsets[k] for k, c in enumerate(cols)]).astype(np.int32)
        value = np.concatenate([b.usage[i, c] for b, c in zip(d.blocks, cols, strict=True)])
        h.addRow(-INF, cap, len(index), index, value)
    return h, offsets


def _lp_from_triplets(cost, rows, cols, vals, row_lower, row_upper, integer: bool = False) -> highspy.Highs:
    n, m = len(cost), len(row_lower)
    order = np.lexsort((rows, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    start = np.searchsorted(cols, np.arange(n + 1)).astype(np.int32)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(
        n, m, len(vals), int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMaximize), 0.0,
        np.asarray(cost, dtype=np.float64), np.zeros(n), np.full(n, INF), np.asarray(row_lower, dtype=np.float64),
        np.asarray(row_upper, dtype=np.float64), start, rows.astype(np.int32), vals.astype(np.float64),
        np.ones(n, dtype=np.int32) if integer else np.zeros(n, dtype=np.int32),
    )  # fmt: skip
    return h


def _branching(pool: _Pool, allowed, lp: _MasterLP) -> tuple[int, int, float] | None:
    """``(block, capacity row, v)``: split the block whose LP mix spreads most over a priced capacity row into
    usage ``<= v`` and ``>= v + 1`` (each child excludes part of the mix); None when no block's mix spreads."""
    best = None
    for k in sorted({kk for kk, _ in allowed}):
        picked = [
            (w, pool.usage[kk][p]) for (kk, p), w in zip(allowed, lp.weights, strict=True) if kk == k and w > 1e-7
        ]
        if len(picked) <= 1:
            continue
        weights = np.array([w for w, _ in picked])
        usage = np.array([u for _, u in picked])
        spread = usage.max(axis=0) - usage.min(axis=0)
        if spread.max() <= 0.5:
            continue
        score = spread * (lp.duals + 1e-6)
        row = int(np.argmax(score))
        if best is None or score[row] > best[0]:
            mix = float(weights @ usage[:, row] / weights.sum())
            v = np.floor(mix + 1e-9)
            v = min(max(v, usage[:, row].min()), usage[:, row].max() - 1)  # both children keep part of the mix
            best = (score[row], k, row, float(v))
    return None if best is None else best[1:]
