"""PPO quality and speed benchmark: a trained agent against the heuristics and the hindsight optimum.

    PYTHONPATH=. .venv/bin/python bench/bench_ppo.py --scenario table1 --seeds 100
    PYTHONPATH=. .venv/bin/python bench/bench_ppo.py --checkpoint runs/NAME --scenario table1 --seeds 100 --speed

Quality: the agent (deterministic) and every heuristic play the held-out seeds 1000..1000+N-1 (disjoint
from training seeds >= 10**6 and validation seeds 900-909; ``--seed-start 900`` plays the validation
range instead, to choose between agents without looking at held-out seeds). Reported per policy: mean return (USD),
mean over seeds of the ratio ``1 - (G* - G)/|G*|`` to the hindsight MILP optimum ``G*`` of the seed
(read from / written to ``.cache/hindsight``), and the fraction of seeds where the agent beats it.

Speed (``--speed``): with the checkpoint's config, (a) env steps per second of the training VecEnv
alone (masked-random actions, masks included), (b) training timesteps per second of the same VecEnv
under PPO; the env's share of training time is (b)/(a).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401
from agents import EVAL_SEED_START, load_agent, shipped_agent_path
from agents.config import PPOConfig
from agents.factory import build_model, make_normalized_vec_env
from baselines import make_policy
from baselines.heuristics import HEURISTICS
from baselines.rolling import RollingHorizonPolicy
from evaluation.cache import DEFAULT_CACHE_DIR, cached_hindsight
from evaluation.episode import run_episode
from evaluation.metrics import ratio_to_optimum


def hindsight_optima(scenario, env_id: str, seeds: list[int], time_limit: float | None) -> dict[int, object]:
    """Hindsight result per seed (cached). A deterministic scenario has one realization for every seed,
    so it is solved once (seed ``seeds[0]``) and shared."""

    def solve(seed: int):
        return cached_hindsight(scenario, seed, env_id=env_id, cache_dir=DEFAULT_CACHE_DIR, time_limit=time_limit)

    if scenario.deterministic:
        shared = solve(seeds[0])
        return dict.fromkeys(seeds, shared)
    return {s: solve(s) for s in seeds}


def quality(agent, env_id: str, seeds: list[int], hindsight_seeds: int, time_limit: float | None) -> dict:
    """Mean return of every policy on ``seeds``; ratios to the hindsight result on the first ``hindsight_seeds``.

    With a time-limited solve the optimum lies in ``[objective, bound]``: ``ratio_bound`` (to the bound)
    is a lower bound on the true ratio, ``ratio_plan`` (to the best plan found) an upper bound.
    """
    env = gym.make(env_id, scenario=agent.scenario, forecast_days=agent.meta.forecast_days)
    policies = {"ppo": agent, **{name: cls(agent.scenario) for name, cls in HEURISTICS.items()}}
    returns = {name: np.array([run_episode(env, p, s).episode_return for s in seeds]) for name, p in policies.items()}
    started = time.perf_counter()
    solved = seeds[:hindsight_seeds]
    optima = hindsight_optima(agent.scenario, env_id, solved, time_limit) if solved else None
    solve_s = time.perf_counter() - started
    rows = {}
    for name, g in returns.items():
        row = {
            "mean_return": float(g.mean()),
            "std_return": float(g.std()),
            "ppo_wins": float(np.mean(returns["ppo"] > g)) if name != "ppo" else None,
        }
        if optima:
            sub = g[: len(solved)]
            row["mean_return_solved"] = float(sub.mean())
            row["ratio_plan"] = float(
                np.mean([ratio_to_optimum(x, optima[s].objective) for x, s in zip(sub, solved, strict=True)])
            )
            row["ratio_bound"] = float(
                np.mean([ratio_to_optimum(x, optima[s].bound) for x, s in zip(sub, solved, strict=True)])
            )
        rows[name] = row
    info = {}
    if optima:
        results = list({id(r): r for r in optima.values()}.values())
        info = {
            "solved_seeds": len(solved),
            "distinct_solves": len(results),
            "statuses": sorted({r.status for r in results}),
            "mean_objective": float(np.mean([optima[s].objective for s in solved])),
            "mean_bound": float(np.mean([optima[s].bound for s in solved])),
            "max_gap": float(max(r.gap for r in results)),
        }
    return {"rows": rows, "hindsight": info, "hindsight_seconds": solve_s}


def rolling_comparison(agent, env_id: str, seeds: list[int], **options) -> dict:
    """PPO and the rolling-horizon MILP on the same ``seeds``; ``options`` (``window``, ``time_limit``)
    go to the policy (its defaults otherwise). ``hits``: daily solves stopped by the time limit."""
    env = gym.make(env_id, scenario=agent.scenario, forecast_days=agent.meta.forecast_days)
    rolling = make_policy("rolling-milp", agent.scenario, env_id=env_id, **options)
    started, solves, hits, g_roll = time.perf_counter(), 0, 0, []
    for s in seeds:
        g_roll.append(run_episode(env, rolling, s).episode_return)
        solves += len(rolling.statuses)
        hits += sum(x == "time_limit" for x in rolling.statuses)
    g_roll = np.array(g_roll)
    seconds = time.perf_counter() - started
    g_ppo = np.array([run_episode(env, agent, s).episode_return for s in seeds])
    return {
        "ppo": float(g_ppo.mean()),
        "rolling": float(g_roll.mean()),
        "wins": float(np.mean(g_ppo > g_roll)),
        "s": seconds,
        "solves": solves,
        "hits": hits,
    }


def speed(config: PPOConfig, rollouts: int = 4) -> dict:
    torch.set_num_threads(config.torch_threads)
    steps = config.rollout_size * rollouts
    venv = make_normalized_vec_env(config)
    venv.reset()
    rng = np.random.default_rng(0)
    nvec = venv.action_space.nvec
    # slot i's choices sit at flat mask positions starts[i] + 0..nvec[i]-1; pad to the widest slot
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    cols = np.arange(nvec.max())
    valid = cols[None, :] < nvec[:, None]  # [slots, width]
    flat = np.where(valid, starts[:, None] + cols[None, :], 0)
    started = time.perf_counter()
    for _ in range(steps // config.n_envs):
        masks = np.stack(venv.env_method("action_masks"))[:, flat] & valid  # [n_envs, slots, width]
        venv.step(np.where(masks, rng.random(masks.shape), -1.0).argmax(axis=-1))  # uniform among allowed
    env_rate = steps / (time.perf_counter() - started)
    model = build_model(config, make_normalized_vec_env(config))
    started = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_rate = steps / (time.perf_counter() - started)
    return {"env_steps_per_s": env_rate, "train_steps_per_s": train_rate, "env_share": train_rate / env_rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="table1", help="scenario of the shipped agent (default: table1)")
    parser.add_argument("--env", default="CrossBorderDispatch-v0", help="env id (default: CrossBorderDispatch-v0)")
    parser.add_argument("--checkpoint", default=None, help="agent directory (default: the shipped agent)")
    parser.add_argument("--seeds", type=int, default=100, help="held-out seeds from 1000 (default: 100)")
    parser.add_argument(
        "--seed-start",
        type=int,
        default=EVAL_SEED_START,
        help="first seed (default: 1000, the held-out range; 900 plays the validation range 900..)",
    )
    parser.add_argument("--speed", action="store_true", help="also measure env-only vs training steps per second")
    parser.add_argument(
        "--hindsight-seeds", type=int, default=None, help="solve the hindsight MILP on the first K seeds (default: all)"
    )
    parser.add_argument("--rolling-seeds", type=int, default=0, help="also play rolling-milp on the first K seeds")
    parser.add_argument(
        "--rolling-window",
        type=int,
        default=None,
        help=f"look-ahead days of that rolling-milp (default: its own, {RollingHorizonPolicy.DEFAULTS['window']})",
    )
    parser.add_argument(
        "--rolling-time-limit", type=float, default=None, help="seconds per daily rolling-milp solve (default: its own)"
    )
    parser.add_argument("--time-limit", type=float, default=None, help="seconds per hindsight solve (default: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = Path(args.checkpoint) if args.checkpoint else shipped_agent_path(args.scenario, args.env)
    agent = load_agent(path, env=gym.make(args.env, scenario=args.scenario), name="ppo")
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    k = len(seeds) if args.hindsight_seeds is None else min(args.hindsight_seeds, len(seeds))
    started = time.perf_counter()
    result = quality(agent, args.env, seeds, k, args.time_limit)
    print(f"# {path} on {args.scenario} / {args.env}, seeds {seeds[0]}..{seeds[-1]} ({agent.meta.num_timesteps} steps)")
    h = result["hindsight"]
    if h:
        print(
            f"hindsight on the first {h['solved_seeds']} seeds ({h['distinct_solves']} distinct solves, status "
            f"{h['statuses']}, time limit {args.time_limit or 'none'} s, max gap {h['max_gap']:.4f}): mean plan "
            f"{h['mean_objective']:.1f}, mean bound {h['mean_bound']:.1f}"
        )
    print(
        "| policy | mean return (all seeds) | std | PPO beats it on | mean return (solved seeds) | ratio to bound |",
        end="",
    )
    print(" ratio to plan |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in result["rows"].items():
        wins = f"{row['ppo_wins']:.0%} of seeds" if row["ppo_wins"] is not None else ""
        solved = (
            f"{row['mean_return_solved']:.1f} | {row['ratio_bound']:.4f} | {row['ratio_plan']:.4f}"
            if "ratio_plan" in row
            else "n/a | n/a | n/a"
        )
        print(f"| {name} | {row['mean_return']:.1f} | {row['std_return']:.1f} | {wins} | {solved} |")
    print(f"(quality run {time.perf_counter() - started:.0f}s, of which hindsight {result['hindsight_seconds']:.0f}s)")
    if args.rolling_seeds:
        options = {"window": args.rolling_window, "time_limit": args.rolling_time_limit}
        options = {k: v for k, v in options.items() if v is not None}
        r = rolling_comparison(agent, args.env, seeds[: args.rolling_seeds], **options)
        print(
            f"rolling-horizon MILP {options or '(defaults)'} on the first {args.rolling_seeds} seeds ({r['s']:.0f}s, "
            f"{r['hits']} of {r['solves']} daily solves stopped at the time limit): mean return "
            f"{r['rolling']:.1f}; PPO {r['ppo']:.1f}; PPO beats it on {r['wins']:.0%} of them"
        )
    if args.speed:
        config = PPOConfig.from_file(path / "config.yaml")
        s = speed(config)
        print(
            f"speed (n_envs={config.n_envs}): env alone {s['env_steps_per_s']:.0f} steps/s, training "
            f"{s['train_steps_per_s']:.0f} steps/s, env share of training time {s['env_share']:.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
