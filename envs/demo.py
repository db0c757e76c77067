"""Short demo: a masked-random and a greedy policy on one scenario, with the reward decomposition.

Run: ``python -m envs.demo [--scenario table1] [--seed 0]``.
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import envs
from baselines.heuristics import HEURISTICS
from baselines.policy import run_episode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="table1", help=f"preset {envs.preset_names()} or a YAML/JSON path")
    parser.add_argument("--env", default="CrossBorderDispatch-v0", choices=list(envs.ENV_IDS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = gym.make(args.env, scenario=args.scenario)
    header = (
        f"{'policy':<11}{'return':>11}" + "".join(f"{n:>24}" for n in envs.TERM_NAMES) + f"{'fill':>7}{'on-time':>9}"
    )
    print(f"{args.env} on {args.scenario!r}, seed {args.seed} (USD over the episode)\n{header}")
    for name in ("random", "greedy", "base-stock"):
        res = run_episode(env, HEURISTICS[name](env.unwrapped.scenario), args.seed)
        row = "".join(f"{res.terms[n]:>24.1f}" for n in envs.TERM_NAMES)
        print(
            f"{name:<11}{res.episode_return:>11.1f}{row}{res.kpis['fill_rate']:>7.2f}{res.kpis['on_time_rate']:>9.2f}"
        )


if __name__ == "__main__":
    main()
