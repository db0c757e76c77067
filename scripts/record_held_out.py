"""Write ``held_out.json`` beside a shipped agent: its return on one held-out seed (the test replays it).

python scripts/record_held_out.py agents/checkpoints/table1__CrossBorderDispatch-v0 [--seed 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import envs  # noqa: E402, F401  (registers the ids)
from agents import EVAL_SEED_START, load_agent  # noqa: E402
from envs.files import write_atomic  # noqa: E402
from evaluation.episode import run_episode  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("agent", type=Path, help="a shipped agent directory")
    parser.add_argument("--seed", type=int, default=EVAL_SEED_START, help=f"held-out seed (>= {EVAL_SEED_START})")
    args = parser.parse_args(argv)
    if args.seed < EVAL_SEED_START:
        parser.error(f"--seed: {args.seed} is not held out; allowed: >= {EVAL_SEED_START}")
    meta = json.loads((args.agent / "agent.json").read_text())
    env = gym.make(meta["env_id"], scenario=meta["scenario_name"])
    result = run_episode(env, load_agent(args.agent, env=env), args.seed)
    write_atomic(args.agent / "held_out.json", json.dumps({"seed": args.seed, "return": result.episode_return}) + "\n")
    print(f"{args.agent}: seed {args.seed}, return {result.episode_return:,.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
