"""The GPU path (issue 11, item 5): PPO on an accelerator against the CPU of the same machine.

    PYTHONPATH=. python bench/bench_gpu.py [--rollouts 4] [--train-timesteps 30000] [--out DIR]

1. PPO timesteps/s on ``table1`` (new stack: tensor distribution, batched env), the shipped agent's config and
   larger-batch variants, ``device`` cpu (one torch thread, as training runs by default) and cuda.
2. The tensor masked distribution gives the same log-probabilities, entropies and mode on cuda as on the CPU
   (random logits and masks, slots with one allowed choice included).
3. ``train.py --device auto`` trains a short run on the accelerator; the saved agent loads on the CPU (agent
   directories are device-free safetensors) and plays held-out seed 1000 with the actions it takes on cuda.

Without CUDA it says so and runs the CPU parts only. Prints markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_batched import ppo_speed  # noqa: E402  (this folder is on sys.path when run as a script)

import envs  # noqa: E402, F401 - registers the ids
from agents.config import PPOConfig  # noqa: E402
from agents.distribution import TensorMaskedMultiCategorical  # noqa: E402
from agents.policy import load_agent, shipped_agent_path  # noqa: E402
from evaluation.episode import run_episode  # noqa: E402

VARIANTS = ("", "n_epochs=4 batch_size=960", "n_envs=64 n_steps=30 n_epochs=4 batch_size=1920",
            "n_envs=256 n_steps=30 n_epochs=4 batch_size=7680")  # fmt: skip


def config_with(change: str, device: str) -> PPOConfig:
    config = PPOConfig.from_file(shipped_agent_path("table1") / "config.yaml")
    config.pretrain_teacher, config.distribution, config.vec_env, config.device = None, "tensor", "batched", device
    for item in change.split():
        name, value = item.split("=")
        setattr(config, name, type(getattr(config, name))(value))
    return config.validate()


def distribution_check(device: str) -> str:
    """Largest difference between cuda and the CPU over log-probs and entropies, and whether the modes agree."""
    gen = torch.Generator().manual_seed(0)
    dims = [1, 2, 3, 5, 4, 1, 6]
    logits = torch.randn(512, sum(dims), generator=gen)
    masks = torch.rand(512, sum(dims), generator=gen) < 0.7
    start = 0
    for n in dims:  # at least one allowed choice per slot (the env's masks always allow reject / send nothing)
        masks[:, start] = True
        start += n
    out = {}
    for dev in ("cpu", device):
        dist = TensorMaskedMultiCategorical(dims)
        dist.proba_distribution(logits.to(dev))
        dist.apply_masking(masks.to(dev))
        mode = dist.mode()
        out[dev] = (dist.log_prob(mode).cpu(), dist.entropy().cpu(), mode.cpu())
    cpu, acc = out["cpu"], out[device]
    diff = max(float((cpu[0] - acc[0]).abs().max()), float((cpu[1] - acc[1]).abs().max()))
    return f"largest log-prob / entropy difference {diff:.1e}; modes equal: {bool(torch.equal(cpu[2], acc[2]))}"


def train_check(timesteps: int, folder: Path) -> str:
    """train.py --device auto, then the agent played on the CPU and on cuda (held-out seed 1000)."""
    run = folder / "run"
    cmd = [sys.executable, "train.py", "--scenario", "table1", "--device", "auto", "--timesteps", str(timesteps),
           "--n-envs", "16", "--n-steps", "60", "--batch-size", "480", "--no-hindsight", "--no-progress-bar",
           "--eval-freq", str(timesteps), "--out", str(run)]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return f"train.py failed (rc {done.returncode}): {done.stderr[-800:]}"
    final = run  # train.py writes the final agent into --out
    env = gym.make("CrossBorderDispatch-v0", scenario="table1")
    agent = load_agent(final, env)
    on_cpu = run_episode(env, agent, 1000)
    agent.policy.to("cuda")
    on_gpu = run_episode(env, agent, 1000)
    same = sum(np.array_equal(a, b) for a, b in zip(on_cpu.actions, on_gpu.actions, strict=True))
    return (
        f"train.py --device auto: {timesteps:,} timesteps in {wall:.0f} s (process start and validation included); "
        f"agent on the CPU returns {on_cpu.episode_return:,.2f} on seed 1000, on cuda {on_gpu.episode_return:,.2f}; "
        f"{same} of {len(on_cpu.actions)} daily actions identical"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rollouts", type=int, default=4)
    p.add_argument("--train-timesteps", type=int, default=30_000)
    p.add_argument("--out", default=None, help="folder for the short training run (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "none"
    print(f"Python {platform.python_version()}, torch {torch.__version__}, CUDA device: {name}\n")
    print("| config (shipped table1 config with) | cpu timesteps/s | cuda timesteps/s | cuda / cpu |")
    print("|---|---:|---:|---:|")
    for change in VARIANTS:
        cpu, _ = ppo_speed(config_with(change, "cpu"), args.rollouts)
        gpu = ppo_speed(config_with(change, "cuda"), args.rollouts)[0] if cuda else float("nan")
        print(f"| {change or '(as shipped)'} | {cpu:,.0f} | {gpu:,.0f} | {gpu / cpu:.2f} |", flush=True)
    if not cuda:
        print("\nNo CUDA device: the distribution and training checks need one.")
        return
    print("\n" + distribution_check("cuda"))
    with tempfile.TemporaryDirectory() as tmp:
        print(train_check(args.train_timesteps, Path(args.out) if args.out else Path(tmp)))


if __name__ == "__main__":
    main()
