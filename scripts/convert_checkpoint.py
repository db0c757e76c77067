"""Convert an agent directory of the old pickle-based format (``model.zip`` + ``vecnormalize.pkl``) to data files.

    python scripts/convert_checkpoint.py DIR --trust-checkpoint [--check-seeds 1000-1004]

Reading the old files unpickles them, which runs any code they hold, so the conversion needs
``--trust-checkpoint``: use it only on checkpoints whose origin you trust (the project converted its
shipped agents this way once). The new files (``agents/checkpoint.py``) are written in place of the old
ones, then the converted agent plays ``--check-seeds`` against the old one: every action must be the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.checkpoint import LEGACY_MODEL_FILE, LEGACY_STATS_FILE, read_agent, write_agent  # noqa: E402
from agents.policy import PPOAgent, load_agent, policy_of  # noqa: E402
from evaluation.episode import run_episode  # noqa: E402
from evaluation.runner import parse_seeds  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", type=Path)
    p.add_argument("--trust-checkpoint", action="store_true", help="required: the old files are unpickled")
    p.add_argument("--check-seeds", default="1000-1004", help="seeds on which old and new must act alike")
    args = p.parse_args(argv)
    if not args.trust_checkpoint:
        p.error("--trust-checkpoint is required: reading model.zip/vecnormalize.pkl can run code they hold")
    if not (args.directory / LEGACY_MODEL_FILE).is_file():
        p.error(f"{args.directory} holds no {LEGACY_MODEL_FILE}: nothing to convert")
    old = read_agent(args.directory, trust=True)
    env = gym.make(old.meta.env_id, scenario=old.scenario, forecast_days=old.meta.forecast_days)
    old_agent = PPOAgent(
        policy_of(old, env.observation_space, env.action_space), old.normalization, old.meta, old.scenario
    )
    seeds = parse_seeds(args.check_seeds)
    before = [np.stack(run_episode(env, old_agent, s).actions) for s in seeds]
    write_agent(
        args.directory, old.meta, old.config, old.scenario, old.policy_state, old.optimizer_state, old.normalization
    )
    for name in (LEGACY_MODEL_FILE, LEGACY_STATS_FILE):
        (args.directory / name).unlink(missing_ok=True)
    new_agent = load_agent(args.directory)  # the new format, read without trust
    after = [np.stack(run_episode(env, new_agent, s).actions) for s in seeds]
    same = all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    print(f"converted {args.directory}; actions on seeds {args.check_seeds}: {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
