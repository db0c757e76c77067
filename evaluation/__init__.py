"""The evaluation layer: how any policy is played, measured, compared and written down.

Modules, bottom up:

* ``episode``: the policy protocol, :func:`run_episode` (the one episode loop) and :class:`PlanReplay`;
* ``metrics``: the ratio to the optimum and the relative gap;
* ``provenance``: the versions and commit a result came from;
* ``cache``: the on-disk hindsight answers (solved once, checked, reused);
* ``policies``: every policy by name or checkpoint (built-ins, rolling MILP, trained agents);
* ``runner`` and ``report``: ``evaluate.py``'s resumable rows and its statistics, tables and plots.

The first three depend on ``envs`` only, so ``baselines`` and ``agents`` build on them; ``cache``
needs ``baselines``; ``policies``, ``runner`` and ``report`` sit on top of both. This file imports
only the bottom modules, so importing one of them never pulls in the rest.
"""

from evaluation.episode import EpisodeResult, PlanReplay, Policy, run_episode
from evaluation.metrics import ratio_to_optimum, relative_gap

__all__ = ["EpisodeResult", "PlanReplay", "Policy", "ratio_to_optimum", "relative_gap", "run_episode"]
