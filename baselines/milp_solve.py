"""Solving a built dispatch MILP: HiGHS plus the lazy Eq.5 cut loop, the SKU decomposition, and the plan read back.

:func:`solve_model` returns a :class:`Solution` whose ``objective`` is the exact return of its
plan (Eq.5 evaluated at the integer stock, the env's formula), with the solver's status, best
bound and gap read together, as the contract tests require.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import highspy
import numpy as np

from baselines.milp_model import INF, DispatchModel, MilpError, eq5_value
from envs.reward import TERM_NAMES, signed_sum
from evaluation.metrics import relative_gap


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


_STATUS_NAMES = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
    highspy.HighsModelStatus.kInterrupt: "time_limit",
    highspy.HighsModelStatus.kSolutionLimit: "node_limit",  # the only limit of that kind we set: mip_max_nodes
}


def solve_model(
    model: DispatchModel,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    max_rounds: int = 200,
    threads: int | None = None,
    decompose: bool = False,
    node_limit: int | None = None,
    solver: str = "highs",
) -> Solution:
    """Solve, adding violated Eq.5 cuts until none is left (each round warm-started from the last plan).

    ``time_limit`` (seconds, all rounds) stops with the best plan, its exact objective and the best bound
    (the bound of a model with fewer cuts is still valid: it is a relaxation). ``mip_gap`` is the solver's
    relative gap (0 = prove optimality). ``node_limit`` caps the branch-and-bound nodes per cut round (status
    ``"node_limit"`` when it binds): unlike a time limit it ends every run at the same point, so the plan does
    not depend on machine speed or load. ``solver`` is ``"highs"`` (default) or ``"scip"`` (pyscipopt, the
    same model read from MPS), for the monolith and the SKU subproblems alike. ``decompose`` first solves the
    SKUs apart (see :func:`_solve_by_sku`; ignored for ``decisions="transfers"``, whose fixed routing rule
    keeps other SKUs from doing nothing).
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
    limits = (time_limit, mip_gap, max_rounds, threads, node_limit, solver)
    if decompose and model.layout.routes and model.net.K > 1:
        status, values, bound, rounds = _solve_by_sku(model, *limits)
    else:
        status, values, bound, rounds = _solve_loop(model, *limits)
    seconds = time.perf_counter() - t0
    return _solution(model, values, status, bound, seconds, rounds)


def _solve_loop(model: DispatchModel, time_limit, mip_gap, max_rounds, threads, node_limit=None, solver="highs"):
    """The solver plus the Eq.5 cut loop on ``model.highs``: ``(status, values or None, bound, rounds)``."""
    run = SOLVERS[solver]
    t0 = time.perf_counter()
    rounds, status, values, bound, start = 0, "optimal", None, float("inf"), None
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


def _run_highs(h: highspy.Highs, left, mip_gap, node_limit, threads, start, abs_gap: float = 1e-9,
               infeasible_ok: bool = False):
    """One HiGHS solve of the model ``h`` holds (a maximization): ``(status, column values or None, dual bound)``.
    ``abs_gap`` is the absolute gap that also ends the search (beside ``mip_gap``, relative). An infeasible
    model raises :class:`MilpError`, or with ``infeasible_ok`` (a branch-and-price node) returns status
    ``"infeasible"`` with bound ``-inf``."""
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    h.setOptionValue("mip_abs_gap", float(abs_gap))
    h.setOptionValue("random_seed", 0)
    if node_limit is not None:
        h.setOptionValue("mip_max_nodes", int(node_limit))
    if threads is not None:
        _use_threads(int(threads))
        h.setOptionValue("threads", int(threads))
    h.setOptionValue("time_limit", float(left) if left is not None else float("inf"))
    if start is not None:
        h.setSolution(len(start), np.arange(len(start), dtype=np.int32), start)
    h.run()
    ms = h.getModelStatus()
    info = h.getInfo()
    if infeasible_ok and ms == highspy.HighsModelStatus.kInfeasible:
        return "infeasible", None, -np.inf
    if ms not in _STATUS_NAMES:
        name = h.modelStatusToString(ms)
        raise MilpError(f"HiGHS ended with status {name!r}: no plan (a model bug, not a limit)")
    has_plan = info.primal_solution_status == 2  # kSolutionStatusFeasible
    values = np.array(h.getSolution().col_value) if has_plan else None
    return _STATUS_NAMES[ms], values, float(info.mip_dual_bound)


_scheduler_threads: int | None = None  # the threads HiGHS's process-wide scheduler was last started with by us


def _use_threads(threads: int) -> None:
    """HiGHS runs every solve of a process on one global scheduler, fixed by the first solve: a later solve that
    asks for another thread count fails ("Not Set"). Restart the scheduler when the count changes."""
    global _scheduler_threads
    if _scheduler_threads != threads:
        highspy.Highs.resetGlobalScheduler(True)
        _scheduler_threads = threads


_SCIP_STATUS = {"optimal": "optimal", "gaplimit": "optimal", "timelimit": "time_limit", "userinterrupt": "time_limit",
                "nodelimit": "node_limit", "totalnodelimit": "node_limit"}  # fmt: skip


def _run_scip(h: highspy.Highs, left, mip_gap, node_limit, threads, start, abs_gap: float = 1e-9,
              infeasible_ok: bool = False):
    """One SCIP solve (pyscipopt) of the model HiGHS holds: HiGHS writes it as MPS, SCIP reads it (no second
    builder, so both solvers see the very same rows). ``threads`` is ignored (SCIP's search is single-threaded)."""
    from pyscipopt import Model as ScipModel  # deferred: only runs that ask for SCIP load it

    scip = ScipModel()
    scip.hideOutput()
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "model.mps")
        h.writeModel(path)
        scip.readProblem(path)
    scip.setParam("limits/gap", float(mip_gap))
    scip.setParam("limits/absgap", float(abs_gap))
    scip.setParam("randomization/randomseedshift", 0)
    if left is not None:
        scip.setParam("limits/time", float(left))
    if node_limit is not None:
        scip.setParam("limits/nodes", int(node_limit))
    variables = sorted(scip.getVars(), key=lambda v: int(v.name[1:]))  # HiGHS names its columns c0, c1, ...
    if len(variables) != h.getNumCol():
        raise MilpError(f"SCIP read {len(variables)} columns from the MPS file, the model has {h.getNumCol()}")
    if start is not None:
        sol = scip.createSol()
        for var, value in zip(variables, start, strict=True):
            scip.setSolVal(sol, var, float(value))
        scip.addSol(sol, free=True)
    scip.optimize()
    name = scip.getStatus()
    if infeasible_ok and name == "infeasible":
        return "infeasible", None, -np.inf
    if name not in _SCIP_STATUS:
        raise MilpError(f"SCIP ended with status {name!r}: no plan (a model bug, not a limit)")
    values = None
    if scip.getNSols() > 0:
        best = scip.getBestSol()
        values = np.array([scip.getSolVal(best, var) for var in variables])
    return _SCIP_STATUS[name], values, float(scip.getDualbound())


SOLVERS = {"highs": _run_highs, "scip": _run_scip}  # solver name -> one MIP solve of a built model


def solver_version(solver: str) -> str:
    """The version of ``solver`` this process runs (HiGHS's library version, SCIP's via pyscipopt)."""
    if solver == "highs":
        return highspy.Highs().version()
    from pyscipopt import Model as ScipModel

    return f"SCIP {ScipModel().version()} (pyscipopt {importlib.metadata.version('pyscipopt')})"


def _solve_by_sku(model: DispatchModel, time_limit, mip_gap, max_rounds, threads, node_limit=None, solver="highs"):
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
    ok = bounded = dn_values is not None
    rounds, total_bound, gaps = 0, float("inf"), [mip_gap] * K
    # A SKU's model also carries the other SKUs' do-nothing value, so its relative gap is of a larger number than
    # its share of the whole: SKU gaps at mip_gap can add up past mip_gap of the total. A second pass then gives
    # each SKU an equal share of the allowed total slack, as a gap relative to its own objective.
    for _ in range(2 if ok else 0):
        total_bound, ok, bounded = -(K - 1) * do_nothing, True, True
        sub_bounds = []
        for k in range(K):
            # with a time limit, the SKUs share at most half of it, in turn (the rest is left for the whole model)
            left = None if time_limit is None else 0.5 * time_limit - (time.perf_counter() - t0)
            if left is not None and left <= 0:
                bounded = False
                break
            sub = _sku_model(model, k, x_sku, y_sku)
            status, values, bound, r = _solve_loop(sub, left, gaps[k], max_rounds, threads, node_limit, solver)
            rounds += r
            total_bound += bound  # a bound even when the SKU stopped on its limit
            sub_bounds.append(bound)
            if status != "optimal" or values is None:
                ok = False
                continue
            fixed_x[x_sku == k] = np.rint(values[model.x_cols[x_sku == k]])
            fixed_y[y_sku == k] = np.rint(values[model.y_cols[y_sku == k]])
        if not (ok and bounded):
            break
        feasible, values = _fixed_plan_values(model, fixed_x, fixed_y)
        if not feasible:
            break  # a capacity row is violated: the whole model decides
        objective = _solution(model, values, "optimal", total_bound, 0.0, 0).objective
        if relative_gap(total_bound, objective) <= mip_gap:
            return "optimal", values, total_bound, rounds
        slack = mip_gap * abs(objective) / K
        gaps = [min(mip_gap, slack / max(abs(b), 1e-9)) for b in sub_bounds]
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 1e-3)
    status, values, bound, r = _solve_loop(model, left, mip_gap, max_rounds, threads, node_limit, solver)
    return status, values, (min(bound, total_bound) if bounded else bound), rounds + r


def _sku_model(model: DispatchModel, k: int, x_sku: np.ndarray, y_sku: np.ndarray) -> DispatchModel:
    """SKU ``k`` alone: the other SKUs' lots and transfers fixed to 0, the capacity rows dropped."""
    lp = model.highs.getLp()
    upper = np.array(lp.col_upper_)
    upper[model.x_cols[x_sku != k]] = 0.0
    upper[model.y_cols[y_sku != k]] = 0.0
    lp.col_upper_ = upper
    row_lower, row_upper = np.array(lp.row_lower_), np.array(lp.row_upper_)
    row_lower[model.capacity_rows], row_upper[model.capacity_rows] = -INF, INF
    lp.row_lower_, lp.row_upper_ = row_lower, row_upper
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    return replace(model, highs=h, cut_segments=set(model.cut_segments))


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
