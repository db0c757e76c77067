"""One MIP solve of a model held by HiGHS, by HiGHS or by SCIP: the solver choice behind one interface.

Every MILP of the project is built as a ``highspy.Highs`` model (a maximization); ``SOLVERS[name](h, left,
mip_gap, node_limit, threads, start, abs_gap=..., infeasible_ok=...)`` solves it once and returns ``(status,
column values or None, dual bound)`` with status ``"optimal"`` (within the gaps), ``"time_limit"``,
``"node_limit"`` or, with ``infeasible_ok``, ``"infeasible"``. SCIP reads the very model HiGHS writes as MPS.
Callers add the Eq.5 cut loop (:mod:`baselines.milp_solve`, :mod:`baselines.decomposition`).
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path

import highspy
import numpy as np

from baselines.milp_model import MilpError

_STATUS_NAMES = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
    highspy.HighsModelStatus.kInterrupt: "time_limit",
    highspy.HighsModelStatus.kSolutionLimit: "node_limit",  # the only limit of that kind we set: mip_max_nodes
}


def _run_highs(
    h: highspy.Highs, left, mip_gap, node_limit, threads, start, abs_gap: float = 1e-9, infeasible_ok: bool = False
):
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


def _run_scip(
    h: highspy.Highs, left, mip_gap, node_limit, threads, start, abs_gap: float = 1e-9, infeasible_ok: bool = False
):
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
