"""Array speed (issue 11): the batched env against SyncVectorEnv, and PPO on the new stack against the old.

    PYTHONPATH=. .venv/bin/python bench/bench_batched.py [--seconds 5] [--ppo-rollouts 4] [--curve 60000]
        [--ppo-config "n_epochs=4 batch_size=960" ...]

1. env-steps/s of ``gym.make_vec(id, num_envs=B)`` (the batched env) with ``threads=1`` (the default) and
   ``threads=2`` (members split between two numba threads) and of Gymnasium's ``SyncVectorEnv`` over the single
   env at the same ``B``, random masked actions, autoresets included, all measured here in turn (the ratio is what
   counts on a shared machine); ``table1`` at ``B = 1024`` and ``large`` at ``B = 128``.
2. PPO timesteps/s on ``table1`` with the shipped agent's config: the old stack (sb3-contrib's distribution,
   ``DummyVecEnv`` of wrapped single envs) and the new (tensor distribution, ``BatchedVecEnv``), with the
   env's share of the time; then the new stack with each ``--ppo-config`` change of that config.
3. ``--curve N``: a learning-curve comparison, same config and seeds, old and new stack, validation mean return
   (seeds 900-909) every ``N/6`` timesteps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402, F401 - registers the ids
from agents.config import VALIDATION_SEEDS, PPOConfig  # noqa: E402
from agents.factory import build_model, make_eval_env, make_normalized_vec_env  # noqa: E402
from agents.policy import PPOAgent, agent_meta, shipped_agent_path  # noqa: E402
from envs.scenario import load_scenario  # noqa: E402
from evaluation.episode import run_episode  # noqa: E402


def vector_speed(vec, seconds: float) -> float:
    """env-steps/s (time inside ``step`` only) with uniform masked actions."""
    nvec = vec.single_action_space.nvec
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    cols = np.arange(nvec.max())[None, :]
    valid = cols < nvec[:, None]
    index = np.where(valid, starts[:, None] + cols, 0)
    rng = np.random.default_rng(0)
    _, info = vec.reset(seed=0)
    inside, steps, end = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        allowed = valid[None] & info["action_mask"][:, index]
        actions = np.where(allowed, rng.random(allowed.shape), -1.0).argmax(axis=2)
        t0 = time.perf_counter()
        _, _, _, _, info = vec.step(actions)
        inside += time.perf_counter() - t0
        steps += 1
    return steps * vec.num_envs / inside


def ppo_speed(config: PPOConfig, rollouts: int) -> tuple[float, float]:
    venv = make_normalized_vec_env(config)
    model = build_model(config, venv)
    model.learn(config.rollout_size)  # warm-up (numba, torch)
    env_before = sum(venv.get_attr("env_seconds"))
    steps = config.rollout_size * rollouts
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    wall = time.perf_counter() - t0
    return steps / wall, (sum(venv.get_attr("env_seconds")) - env_before) / wall


def curve(config: PPOConfig, total: int, points: int = 6) -> list[tuple[int, float, float]]:
    """(timesteps, validation mean return, wall seconds) after each of ``points`` equal chunks."""
    torch.manual_seed(config.seed)
    venv = make_normalized_vec_env(config)
    model = build_model(config, venv)
    env, scenario = make_eval_env(config), load_scenario(config.scenario)
    chunk = max(config.rollout_size, (total // points) // config.rollout_size * config.rollout_size)
    out, started = [], time.perf_counter()
    for _ in range(points):
        model.learn(chunk, reset_num_timesteps=False)
        agent = PPOAgent(model.policy, venv, agent_meta(model, config), scenario)
        mean = float(np.mean([run_episode(env, agent, s).episode_return for s in VALIDATION_SEEDS]))
        out.append((int(model.num_timesteps), mean, time.perf_counter() - started))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--ppo-rollouts", type=int, default=4)
    p.add_argument("--curve", type=int, default=0, help="timesteps of the learning-curve comparison (0: skip)")
    p.add_argument(
        "--ppo-config",
        action="append",
        default=[],
        help='changes of the shipped config to time on the new stack, e.g. "n_epochs=4 batch_size=960"',
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| scenario | B | threads | batched env-steps/s | SyncVectorEnv env-steps/s | ratio |\n"
          "|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for preset, B in (("table1", 1024), ("large", 128)):
        speeds = {}
        for threads in (1, 2):
            batched = gym.make_vec("CrossBorderDispatch-v0", num_envs=B, scenario=preset, threads=threads)
            vector_speed(batched, 1.0)  # compile outside the timing
            speeds[threads] = vector_speed(batched, args.seconds)
        sync = vector_speed(
            gym.make_vec("CrossBorderDispatch-v0", num_envs=B, vectorization_mode="sync", scenario=preset), args.seconds
        )
        for threads, speed in speeds.items():
            print(f"| {preset} | {B} | {threads} | {speed:,.0f} | {sync:,.0f} | {speed / sync:.1f} |", flush=True)
    config = PPOConfig.from_file(shipped_agent_path("table1") / "config.yaml")
    config.pretrain_teacher = None
    print("\n| PPO stack (table1, shipped config) | timesteps/s | env share |\n|---|---:|---:|")
    rates = {}
    for label, distribution, vec_env in (("old: sb3-contrib distribution, DummyVecEnv", "sb3-contrib", "dummy"),
                                         ("new: tensor distribution, BatchedVecEnv", "tensor", "batched")):  # fmt: skip
        config.distribution, config.vec_env = distribution, vec_env
        rates[label], share = ppo_speed(config, args.ppo_rollouts)
        print(f"| {label} | {rates[label]:,.0f} | {share:.0%} |", flush=True)
    old, new = rates.values()
    print(f"\nnew / old: {new / old:.2f}x")
    if args.ppo_config:
        print("\n| new stack, shipped config with | timesteps/s | env share |\n|---|---:|---:|")
    for change in args.ppo_config:
        changed = PPOConfig.from_file(shipped_agent_path("table1") / "config.yaml")
        changed.pretrain_teacher, changed.distribution, changed.vec_env = None, "tensor", "batched"
        for item in change.split():
            name, value = item.split("=")
            setattr(changed, name, type(getattr(changed, name))(value))
        rate, share = ppo_speed(changed.validate(), args.ppo_rollouts)
        print(f"| {change} | {rate:,.0f} | {share:.0%} |", flush=True)
    if args.curve:
        print("\n| stack | timesteps | validation mean return | wall s |\n|---|---:|---:|---:|")
        for label, distribution, vec_env in (("old", "sb3-contrib", "dummy"), ("new", "tensor", "batched")):
            config.distribution, config.vec_env = distribution, vec_env
            for steps, mean, wall in curve(config, args.curve):
                print(f"| {label} | {steps:,} | {mean:,.1f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
