"""Benchmark of evaluate.py's runner: parallel speed-up, rerun cost, and overhead over bare episodes.

Run: ``python bench/bench_evaluate.py [--seeds 1000-1005]``. All on `table1`, end to end through
``python evaluate.py`` in a subprocess (imports, pool start-up, fsync'd row files, report files):

1. the hindsight MILP of each seed is solved first (``--time-limit 30``, cached in
   ``.cache/hindsight`` as ``make demo`` does), so the timed runs measure the runner, not HiGHS;
2. the same run into fresh folders with ``--workers 1`` and ``--workers 2``: speed-up = t1 / t2;
3. the finished run rerun into its folder (nothing to compute): ratio = rerun / t1;
4. the reference: the same episodes played by a bare ``run_episode`` loop in this process, with the
   cached hindsight plans replayed; overhead = t1 / reference.

Prints a Markdown table for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402

import envs  # noqa: E402, F401 - registers the env ids
from agents import load_agent  # noqa: E402
from baselines import make_policy  # noqa: E402
from evaluation.cache import cached_hindsight  # noqa: E402
from evaluation.episode import run_episode  # noqa: E402
from evaluation.runner import parse_seeds  # noqa: E402

AGENT = "agents/checkpoints/table1__CrossBorderDispatch-v0"
BUILTIN = ("rolling-milp", "greedy", "base-stock", "random")
TIME_LIMIT = 30.0
CACHE = ".cache/hindsight"


def evaluate(out: Path, seeds: str, workers: int, backend: str = "local") -> float:
    """Wall seconds of one ``python evaluate.py`` run (the ``make demo`` policies) on ``backend``."""
    policies = ",".join([f"ppo={AGENT}", *BUILTIN])
    options = ["--scenario", "table1", "--policies", policies, "--seeds", seeds, "--workers", str(workers),
               "--time-limit", str(TIME_LIMIT), "--out", str(out), "--cache-dir", CACHE]  # fmt: skip
    options += ["--backend", backend]
    command = [sys.executable, "evaluate.py", *options]
    t0 = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def bare_loop(seeds: tuple[int, ...]) -> float:
    """The same episodes with no runner: build the policies once, play each seed, replay the cached plans."""

    class Plan:
        name = "plan"

        def __init__(self, plan):
            self.plan = plan

        def reset(self, seed=None):
            pass

        def act(self, obs, view):
            return self.plan[view.day]

    t0 = time.perf_counter()
    agent = load_agent(ROOT / AGENT)
    env = gym.make("CrossBorderDispatch-v0", scenario="table1", forecast_days=agent.meta.forecast_days)
    policies = [agent, *(make_policy(name, "table1") for name in BUILTIN)]
    for seed in seeds:
        solved = cached_hindsight("table1", seed, cache_dir=ROOT / CACHE, time_limit=TIME_LIMIT)
        run_episode(env, Plan(solved.plan), seed)
        for policy in policies:
            run_episode(env, policy, seed)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1000-1005")
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = evaluate(tmp / "warm", args.seeds, 2)  # solves (or reads) the hindsight MILPs
        reference = bare_loop(seeds)
        one = evaluate(tmp / "w1", args.seeds, 1)
        two = evaluate(tmp / "w2", args.seeds, 2)
        rerun = evaluate(tmp / "w1", args.seeds, 1)
    rows = len(seeds) * (len(BUILTIN) + 2)
    print(f"table1, {len(seeds)} seeds, {rows} episodes (ppo, {', '.join(BUILTIN)}, hindsight replay); "
          f"warm-up run with the hindsight solves: {warm:.1f} s")  # fmt: skip
    print("| run | wall s | ratio |")
    print("|---|---:|---:|")
    print(f"| bare `run_episode` loop in one process (reference) | {reference:.1f} | 1.00 |")
    print(f"| `evaluate.py --workers 1` | {one:.1f} | {one / reference:.2f} |")
    print(f"| `evaluate.py --workers 2` | {two:.1f} | {two / reference:.2f} |")
    print(f"| rerun of the finished `--workers 1` run (nothing to do) | {rerun:.1f} | {rerun / reference:.2f} |")
    print(f"speed-up workers 2 vs 1: {one / two:.2f}x; rerun / full run: {rerun / one:.2f}")


if __name__ == "__main__":
    main()
