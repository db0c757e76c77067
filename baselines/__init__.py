"""Baselines on the same realizations as the learned agents: hindsight MILP (exact optimum of a seed),
rolling-horizon MILP and heuristics.

* :func:`solve_hindsight`: the optimum of one realization, with its plan (cached on disk by
  :func:`evaluation.cache.cached_hindsight`);
* :class:`RollingHorizonPolicy`: a policy that plans from today's view and the forecast;
* :data:`HEURISTICS`, :func:`make_policy`: every non-learned policy by name.

Modules, bottom up: ``plan_input`` (what a MILP plans over), ``milp_model`` (the builder),
``milp_solve`` (HiGHS, Eq.5 cuts, SKU decomposition), ``heuristics``, ``hindsight``, ``rolling``.
Policies follow :class:`evaluation.episode.Policy`; :func:`run_episode` is re-exported here for
convenience.
"""

from __future__ import annotations

from pathlib import Path

from baselines.heuristics import HEURISTICS
from baselines.hindsight import HindsightResult, build_hindsight, export_mps, replay_plan, solve_hindsight
from baselines.milp_model import MilpError, build_model
from baselines.milp_solve import solve_model
from baselines.rolling import RollingHorizonPolicy
from envs.scenario import Scenario
from evaluation.episode import EpisodeResult, Policy, run_episode

POLICY_NAMES = (*HEURISTICS, RollingHorizonPolicy.name)


def make_policy(name: str, scenario: str | Path | Scenario, env_id: str = "CrossBorderDispatch-v0", **kwargs) -> Policy:
    """A non-learned policy by name: ``greedy``, ``home``, ``base-stock``, ``random`` or ``rolling-milp``.

    ``kwargs`` go to :class:`RollingHorizonPolicy` (``window``, ``time_limit``, ``mip_gap``) only.
    """
    if name == RollingHorizonPolicy.name:
        return RollingHorizonPolicy(scenario, env_id=env_id, **kwargs)
    if name not in HEURISTICS:
        raise ValueError(f"policy {name!r} is not allowed; allowed: {list(POLICY_NAMES)}")
    if kwargs:
        raise ValueError(f"policy {name!r} takes no options; got {sorted(kwargs)}")
    return HEURISTICS[name](scenario)


__all__ = [
    "HEURISTICS",
    "POLICY_NAMES",
    "EpisodeResult",
    "HindsightResult",
    "MilpError",
    "Policy",
    "RollingHorizonPolicy",
    "build_hindsight",
    "build_model",
    "export_mps",
    "make_policy",
    "replay_plan",
    "run_episode",
    "solve_hindsight",
    "solve_model",
]
