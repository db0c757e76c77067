"""Hindsight MILP: the exact optimum of one realization (it reads the whole trace; no policy can).

``solve_hindsight(scenario, seed)`` builds the model of :mod:`baselines.milp_model` on
``scenario.sample(seed)`` and solves it; ``plan`` replayed through ``gym.make(env_id,
scenario=...)`` with ``reset(seed=seed)`` returns ``objective`` (the contract tests prove it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from baselines.heuristics import HEURISTICS
from baselines.milp_model import DispatchModel, build_model
from baselines.milp_solve import solve_model
from baselines.plan_input import hindsight_input
from baselines.solvers import solver_version
from envs.files import atomic_target
from envs.layout import decisions_of
from envs.realization import Realization, Trace
from envs.scenario import Scenario, load_scenario
from evaluation.episode import PlanReplay, run_episode
from evaluation.metrics import relative_gap


@dataclass
class HindsightResult:
    status: str  # "optimal" (proven within mip_gap) or "time_limit" (best plan found, see gap)
    objective: float  # USD, the env return of ``plan``
    bound: float  # USD, best bound on the optimum (>= objective: we maximize)
    gap: float  # (bound - objective) / |objective|
    seconds: float  # build + solve, wall clock
    rows: int
    cols: int
    integers: int
    plan: list[np.ndarray]  # one env action per day (int64), laid out for ``env_id``
    terms: dict[str, float]  # per reward term over the episode (positive magnitudes but Eq.2), envs.TERM_NAMES
    seed: int | None = None
    env_id: str = "CrossBorderDispatch-v0"
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    cut_rounds: int = 0
    extra: dict = field(default_factory=dict)  # "eq5_cuts": cuts in the final model; "fallback": see solve_hindsight

    def to_json(self) -> dict:
        out = asdict(self)
        out["plan"] = [np.asarray(a).tolist() for a in self.plan]
        return out

    @staticmethod
    def from_json(data: dict) -> HindsightResult:
        data = dict(data)
        data["plan"] = [np.asarray(a, dtype=np.int64) for a in data["plan"]]
        return HindsightResult(**data)


def realization_of(scenario: Scenario, seed_or_realization: int | Realization) -> Realization:
    if isinstance(seed_or_realization, Realization):
        return seed_or_realization
    if isinstance(seed_or_realization, bool) or not isinstance(seed_or_realization, int | np.integer):
        raise ValueError(f"seed_or_realization={seed_or_realization!r} must be an int seed or a Realization")
    return scenario.sample(int(seed_or_realization))


def build_hindsight(
    scenario: str | Path | Scenario,
    seed_or_realization: int | Realization,
    env_id: str = "CrossBorderDispatch-v0",
    eq5_cuts: str = "lazy",
) -> DispatchModel:
    """Build (not solve) the hindsight model of one realization."""
    scen = load_scenario(scenario)
    real = realization_of(scen, seed_or_realization)
    net = scen.network
    return build_model(net, hindsight_input(net, Trace.compile(net, real)), decisions_of(env_id), eq5_cuts=eq5_cuts)


def plan_actions(model: DispatchModel, lot_choice: np.ndarray, transfer_choice: np.ndarray) -> list[np.ndarray]:
    """Env actions day by day, laid out for the model's decisions (``lot_choice`` ``[T', R*K*J]``,
    ``transfer_choice`` ``[T', L*K]``)."""
    return [model.layout.assemble(lot_choice[t], transfer_choice[t]) for t in range(model.data.days)]


def replay_plan(
    scenario: str | Path | Scenario, seed_or_realization: int | Realization, env_id: str, plan: list[np.ndarray]
) -> tuple[float, dict[str, float]]:
    """Play ``plan`` through ``gym.make(env_id)``; return the episode return and its terms."""
    scen = load_scenario(scenario)
    env = gym.make(env_id, scenario=scen)
    real = realization_of(scen, seed_or_realization)
    result = run_episode(env, PlanReplay(plan), int(real.seed), realization=real)
    env.close()
    return result.episode_return, result.terms


def fallback_plan(
    scenario: Scenario,
    real: Realization,
    env_id: str,
    do_nothing: list[np.ndarray],
    incumbent: tuple[list[np.ndarray], float, dict[str, float]] | None = None,
) -> tuple[list[np.ndarray], float, dict[str, float], str]:
    """Best of the solver's ``incumbent`` (if any), doing nothing, and the greedy and base-stock heuristics on
    this realization, replayed through the env (a feasible plan whose objective is its exact return). Used when
    a time limit stops the solver: before any incumbent, or with a poor one (``large``)."""
    if incumbent is not None:
        best = (*incumbent, "milp")
    else:
        total, terms = replay_plan(scenario, real, env_id, do_nothing)
        best = (do_nothing, total, terms, "do-nothing")
    env = gym.make(env_id, scenario=scenario)
    for name in ("greedy", "base-stock"):
        res = run_episode(env, HEURISTICS[name](scenario), int(real.seed), realization=real)
        if res.episode_return > best[1]:
            best = (res.actions, res.episode_return, res.terms, name)
    env.close()
    return best


def solve_hindsight(
    scenario: str | Path | Scenario,
    seed_or_realization: int | Realization,
    env_id: str = "CrossBorderDispatch-v0",
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    eq5_cuts: str = "lazy",
    solver: str = "highs",
    threads: int | None = None,
    backend=None,
) -> HindsightResult:
    """Exact optimum (or best plan within ``time_limit`` seconds) of one realization for ``env_id``.

    Solved by branch-and-price over the SKUs (:mod:`baselines.decomposition`; the whole model where rows other
    than capacity couple SKUs); ``extra`` records the method and its counts (nodes, pricing calls, the SKU and
    root bounds). ``solver``: ``"highs"`` (default) or ``"scip"`` (:data:`baselines.solvers.SOLVERS`); recorded
    with its version in ``extra``. ``threads`` caps the solver's threads (None: its default; 1 suits one solve
    per core). ``backend`` runs the per-SKU solves in parallel (:mod:`evaluation.backends`, e.g.
    ``LocalBackend(2, keep_pool=True)``); None solves them one after the other in this process.

    A time limit returns status ``"time_limit"`` with the best plan, bound and gap; any other
    non-optimal solver outcome raises :class:`baselines.milp_model.MilpError`. When the limit stops
    the solver, the plan is the best of its incumbent (if any), doing nothing, and the greedy and
    base-stock heuristics (``extra["fallback"]`` names a heuristic or do-nothing when one wins: on
    ``large`` the solver's incumbent can be far worse), and the bound is at least a solve-free one
    (:func:`baselines.milp_solve.simple_bound`).
    """
    t0 = time.perf_counter()
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit={time_limit!r} must be > 0 seconds or None")
    scen = load_scenario(scenario)
    real = realization_of(scen, seed_or_realization)
    model = build_hindsight(scen, real, env_id, eq5_cuts=eq5_cuts)
    left = None if time_limit is None else max(time_limit - model.build_seconds, 1e-3)
    sol = solve_model(
        model, time_limit=left, mip_gap=mip_gap, decompose=True, solver=solver, threads=threads, backend=backend
    )
    plan = plan_actions(model, sol.lot_choice, sol.transfer_choice)
    objective, terms = sol.objective, sol.terms
    extra = {"eq5_cuts": len(model.cut_segments), "solver": solver, "solver_version": solver_version(solver)}
    extra |= sol.stats
    if sol.status != "optimal":  # stopped early: keep the best of the incumbent and simple feasible plans
        incumbent = (plan, objective, terms) if sol.found_plan else None
        plan, objective, terms, source = fallback_plan(scen, real, env_id, plan, incumbent)
        if source != "milp":
            extra["fallback"] = source
    bound = max(sol.bound, objective)
    return HindsightResult(
        status=sol.status,
        objective=float(objective),
        bound=float(bound),
        gap=relative_gap(bound, objective),
        seconds=time.perf_counter() - t0,
        rows=model.n_rows,
        cols=model.n_cols,
        integers=model.n_integers,
        plan=plan,
        terms=terms,
        seed=int(real.seed),
        env_id=env_id,
        build_seconds=model.build_seconds,
        solve_seconds=sol.seconds,
        cut_rounds=sol.cut_rounds,
        extra=extra,
    )


def export_mps(
    scenario: str | Path | Scenario,
    seed_or_realization: int | Realization,
    env_id: str,
    path: str | Path,
    eq5_cuts: str = "all",
) -> Path:
    """Write the hindsight model of one realization as an MPS file (maximization; with every Eq.5 cut by default,
    so any MILP solver finds the same optimum with no cut loop). Written whole (a temp file, then renamed)."""
    path = Path(path)
    model = build_hindsight(scenario, seed_or_realization, env_id, eq5_cuts=eq5_cuts)
    with atomic_target(path, suffix=path.suffix) as tmp:  # HiGHS picks the format by the extension
        model.write_mps(tmp)
    return path
