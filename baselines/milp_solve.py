"""Solving a built dispatch MILP: a solver (:mod:`baselines.solvers`) plus the lazy Eq.5 cut loop, or branch-and-price
over the SKUs (:mod:`baselines.decomposition`), and the plan read back.

:func:`solve_model` returns a :class:`Solution` whose ``objective`` is the exact return of its
plan (Eq.5 evaluated at the integer stock, the env's formula), with the solver's status, best
bound and gap read together, as the contract tests require.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import highspy
import numpy as np

from baselines import decomposition
from baselines.milp_model import DispatchModel, MilpError, eq5_value
from baselines.solvers import SOLVERS
from envs.reward import TERM_NAMES, signed_sum
from evaluation.metrics import relative_gap

# under a time limit, models up to this many columns get the whole-model solve first (table1: 4,417; large: 253,169)
WHOLE_FIRST_MAX_COLS = 50_000


@dataclass
class Solution:
    """A solved model. ``objective`` is the exact return of ``plan`` (Eq.5 evaluated at the integer stock)."""

    status: str  # "optimal", "time_limit" or "node_limit" (the last two: best plan found, see gap)
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
    stats: dict = field(default_factory=dict)  # how it was solved: "method" and, by branch-and-price, its counts


def solve_model(
    model: DispatchModel,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    max_rounds: int = 200,
    threads: int | None = None,
    decompose: bool = False,
    node_limit: int | None = None,
    solver: str = "highs",
    backend=None,
) -> Solution:
    """Solve, adding violated Eq.5 cuts until none is left (each round warm-started from the last plan).

    ``time_limit`` (seconds, all rounds) stops with the best plan, its exact objective and the best bound
    (the bound of a model with fewer cuts is still valid: it is a relaxation). ``mip_gap`` is the solver's
    relative gap (0 = prove optimality). ``node_limit`` caps the branch-and-bound nodes per cut round (status
    ``"node_limit"`` when it binds): unlike a time limit it ends every run at the same point, so the plan does
    not depend on machine speed or load. ``solver`` is ``"highs"`` (default) or ``"scip"`` (pyscipopt, the
    same model read from MPS), for the whole model and the SKU subproblems alike.

    ``decompose`` solves by branch-and-price over the SKUs (:mod:`baselines.decomposition`: the capacity rows
    are the only rows that couple SKUs), the per-SKU solves run on ``backend`` (an :mod:`evaluation.backends`
    backend; None: this process, one after the other); ``node_limit`` does not apply there. A model whose rows
    couple SKUs otherwise (a warehouse that can be over capacity without a transfer) is solved whole.
    Infeasible, unbounded or solver errors raise :class:`MilpError`.
    """
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit={time_limit!r} must be > 0 seconds or None")
    if not 0.0 <= mip_gap < 1.0:
        raise ValueError(f"mip_gap={mip_gap!r} must be in [0, 1)")
    if node_limit is not None and (
        isinstance(node_limit, bool) or not isinstance(node_limit, int | np.integer) or node_limit < 1
    ):
        raise ValueError(f"node_limit={node_limit!r} must be an integer >= 1 or None")
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not allowed; allowed: {list(SOLVERS)}")
    t0 = time.perf_counter()
    blocks = decomposition.decompose(model) if decompose else None
    if blocks is not None:
        status, values, bound, stats = _solve_by_blocks(model, blocks, time_limit, mip_gap, threads, solver, backend)
        rounds = stats.get("pricing_calls", 0)
    else:
        status, values, bound, rounds = _solve_loop(model, time_limit, mip_gap, max_rounds, threads, node_limit, solver)
        stats = {"method": "whole model"}
    seconds = time.perf_counter() - t0
    sol = _solution(model, values, status, bound, seconds, rounds)
    sol.stats = stats
    return sol


def _solve_by_blocks(model: DispatchModel, blocks, time_limit, mip_gap, threads, solver, backend):
    """Branch-and-price (:func:`baselines.decomposition.branch_and_price`): ``(status, column values of the whole
    model or None, bound, stats)``. The plan's stock and Eq.5 follow from its lots and transfers
    (:func:`_fixed_plan_values`).

    Without a time limit the search runs alone, seeded with doing nothing. Under a limit the whole model gets the
    first half: its heuristics find good plans within seconds, where the search needs a whole pricing round (about
    20 s on ``table1``) before it has any (at 10 s on table1 seed 1002 the search-first order found 8,965, this
    order 11,516; bench/RESULTS.md, "Time-limited order"). The search then gets the rest, seeded with the whole
    model's plan, and can close the gap with its stronger bound; the better plan and the lower bound are kept.
    Not on models above ``WHOLE_FIRST_MAX_COLS`` columns: there HiGHS spends its half in presolve and the root
    LP and finds nothing (``large``: 164 s for a 60 s share), so the search gets the whole limit."""
    t0 = time.perf_counter()
    values, bound, whole_status, stats = None, float("inf"), None, {}
    if time_limit is not None and model.n_cols <= WHOLE_FIRST_MAX_COLS:
        share = 0.5 * time_limit
        whole_status, whole, bound, _ = _solve_loop(model, share, mip_gap, 200, threads, None, solver)
        if whole is not None:
            feasible, values = _fixed_plan_values(model, np.rint(whole[model.x_cols]), np.rint(whole[model.y_cols]))
            if not feasible:
                raise MilpError("the whole model's plan is infeasible with its lots and transfers fixed: a model bug")
        stats["whole_model_seconds"] = round(time.perf_counter() - t0, 3)
    if whole_status == "optimal" and values is not None:
        stats["method"] = "whole model"
        return "optimal", values, min(bound, simple_bound(model)), stats
    seed = values
    if seed is None:
        _, seed = _fixed_plan_values(model, np.zeros(len(model.x_cols)), np.zeros(len(model.y_cols)))
    start = [seed[b.cols] for b in blocks.blocks] if seed is not None else None
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 1e-3)
    found = decomposition.branch_and_price(
        blocks, mip_gap=mip_gap, time_limit=left, backend=backend, solver=solver, threads=threads, start=start
    )
    stats |= {
        "method": "branch-and-price", "nodes": found.nodes, "master_solves": found.iterations,
        "pricing_calls": found.pricing_calls, "columns": found.columns,
        "sku_bound": _finite(found.first_bound), "root_bound": _finite(found.root_bound),
    }  # fmt: skip
    if found.plan is not None:
        full = np.zeros(model.n_cols)
        for block, plan in zip(blocks.blocks, found.plan, strict=True):
            full[block.cols] = plan
        feasible, searched = _fixed_plan_values(model, full[model.x_cols], full[model.y_cols])
        if not feasible:
            raise MilpError("branch-and-price returned a plan the whole model rejects: a decomposition bug")
        if values is None or _objective(model, searched) > _objective(model, values):
            values = searched
    bound = min(bound, found.bound, simple_bound(model))
    status = found.status
    if time_limit is not None:
        status = "optimal" if values is not None and bound - _objective(model, values) <= mip_gap * abs(
            _objective(model, values)) else "time_limit"  # fmt: skip
    return status, values, bound, stats


def _objective(model: DispatchModel, values: np.ndarray) -> float:
    """The exact return of the plan in ``values`` (Eq.5 at its integer stock)."""
    return _solution(model, values, "optimal", np.inf, 0.0, 0).objective


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # results are stored as JSON


def _solve_loop(
    model: DispatchModel, time_limit, mip_gap, max_rounds, threads, node_limit=None, solver="highs", start=None
):
    """The solver plus the Eq.5 cut loop on ``model.highs`` (``start``: a plan to warm-start from): ``(status,
    values or None, bound, rounds)``."""
    run = SOLVERS[solver]
    t0 = time.perf_counter()
    rounds, status, values, bound = 0, "optimal", None, float("inf")
    while True:
        rounds += 1
        left = None
        if time_limit is not None:
            left = time_limit - (time.perf_counter() - t0)
            if left <= 0:
                status = "time_limit"
                break
        status, found, solver_bound = run(model.highs, left, mip_gap, node_limit, threads, start)
        bound = min(solver_bound, simple_bound(model))
        if found is not None:
            values = found
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
        values = start = _raise_e(model, values)
    return status, values, bound, rounds


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
    exact = eq5_value(model.net, model.net.target_stock[w, k].astype(np.float64), inv)
    bad = np.flatnonzero(values[model.e_cols] < exact - 1e-7 * (1.0 + exact))  # HiGHS's feasibility tolerance
    seg = np.minimum(inv[bad], np.maximum(model.inv_upper[t[bad], w[bad], k[bad]] - 1, 0))
    return bad, seg.astype(np.int64)


def _raise_e(model: DispatchModel, values: np.ndarray) -> np.ndarray:
    t, w, k = model.e_index
    inv = np.rint(values[model.inv_cols[t, w, k]])
    out = values.copy()
    out[model.e_cols] = eq5_value(model.net, model.net.target_stock[w, k].astype(np.float64), inv)
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
    terms["eq5_imbalance"] = float(eq5_value(model.net, net.target_stock[w, k].astype(np.float64), inv[t, w, k]).sum())
    objective = signed_sum(terms)
    if not found:
        bound = max(bound, objective)
        objective = float("nan")  # filled by the caller from a replay of the do-nothing plan
    bound = max(bound, objective) if np.isfinite(objective) else bound
    gap = relative_gap(bound, objective) if np.isfinite(objective) else float("inf")
    return Solution(
        status=status, objective=objective, bound=bound, gap=float(gap), seconds=seconds, cut_rounds=rounds,
        terms=terms, lot_choice=lot_choice, transfer_choice=transfer_choice, inv=inv, model_eq5=model_eq5,
        found_plan=found,
    )  # fmt: skip
