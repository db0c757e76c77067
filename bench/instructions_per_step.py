"""Instructions per env step, counted by valgrind's callgrind: a speed comparison that machine load cannot move.

    python bench/instructions_per_step.py --env CrossBorderDispatch-v0 --scenario table1 [--repo DIR] [--steps 600]

Runs the same random masked-action loop (``bench_env.masked_sampler``, seeded) under callgrind twice, with 0
and ``--steps`` steps, and prints the difference per step (imports and start-up cancel out; the resets inside
the loop are counted, as in ``bench_env.py``). ``--repo`` points at another checkout of this project (e.g. a
``git worktree`` of an older commit) to compare two versions with the same interpreter. Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

LOOP = """
import sys
sys.path.insert(0, {bench!r})
import gymnasium as gym, numpy as np
import envs
from bench_env import masked_sampler
env = gym.make({env_id!r}, scenario={scenario!r})
sample = masked_sampler(env, np.random.default_rng(0))
_, info = env.reset(seed=0)
episode = 0
for _ in range({steps}):
    _, _, terminated, _, info = env.step(sample(info["action_mask"]))
    if terminated:
        episode += 1
        _, info = env.reset(seed=episode)
"""


def count(repo: Path, env_id: str, scenario: str, steps: int) -> int:
    code = LOOP.format(bench=str(repo / "bench"), env_id=env_id, scenario=scenario, steps=steps)
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", code],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CrossBorderDispatch-v0")
    p.add_argument("--scenario", default="table1")
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to measure")
    p.add_argument("--steps", type=int, default=600)
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        p.error("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.steps < 1:
        p.error(f"--steps={args.steps} must be >= 1")
    per_step = count(args.repo, args.env, args.scenario, args.steps) - count(args.repo, args.env, args.scenario, 0)
    print(f"{args.repo} {args.env} {args.scenario}: {per_step / args.steps:,.0f} instructions per step")


if __name__ == "__main__":
    main()
