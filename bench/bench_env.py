"""Single-env steps per second with random masked actions, beside Gymnasium's CartPole-v1 in the same run.

Each case plays whole episodes through ``gym.make`` (wrappers included, resets included, as a
training loop would) for about ``--seconds`` per repeat and keeps the median of ``--repeats``.
"env steps/s" counts only the time inside ``env.step``/``env.reset``; "loop steps/s" also counts
drawing the action (uniform among the choices the mask allows, vectorized; CartPole:
``action_space.sample()``). The ratio is env steps/s over CartPole's env steps/s.

Run: ``python bench/bench_env.py`` (writes the ``## Environment step speed`` section of
``bench/RESULTS.md``; ``--no-write`` only prints).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402 - registers the ids
from envs.files import write_atomic  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Environment step speed"
CASES = [("CartPole-v1", None)] + [(env_id, preset) for preset in ("table1", "large") for env_id in envs.ENV_IDS]


def masked_sampler(env: gym.Env, rng: np.random.Generator):
    """``sample(mask) -> action``: per slot, uniform among allowed choices (one vectorized draw per step)."""
    nvec = env.action_space.nvec
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    cols = np.arange(nvec.max())[None, :]
    valid = cols < nvec[:, None]
    index = np.where(valid, starts[:, None] + cols, 0)

    def sample(mask: np.ndarray) -> np.ndarray:
        keys = np.where(valid & mask[index], rng.random(index.shape), -1.0)
        return keys.argmax(axis=1)

    return sample


def measure(env_id: str, preset: str | None, seconds: float, seed: int) -> tuple[float, float, int]:
    """(env steps/s, loop steps/s, steps) of one repeat."""
    env = gym.make(env_id) if preset is None else gym.make(env_id, scenario=preset)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    sample = masked_sampler(env, rng) if preset is not None else None
    in_env = 0.0
    steps, episode = 0, 0
    start = time.perf_counter()
    t0 = time.perf_counter()
    _, info = env.reset(seed=seed)
    in_env += time.perf_counter() - t0
    while time.perf_counter() - start < seconds:
        action = env.action_space.sample() if sample is None else sample(info["action_mask"])
        t0 = time.perf_counter()
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            episode += 1
            _, info = env.reset(seed=seed + episode)
        in_env += time.perf_counter() - t0
        steps += 1
    total = time.perf_counter() - start
    env.close()
    return steps / in_env, steps / total, steps


def run(seconds: float, repeats: int) -> list[dict]:
    rows = []
    for env_id, preset in CASES:
        gym.make(env_id) if preset is None else gym.make(env_id, scenario=preset)  # load/compile outside timing
        runs = [measure(env_id, preset, seconds, seed) for seed in range(repeats)]
        rows.append(
            {
                "env": env_id,
                "scenario": preset or "-",
                "env_sps": statistics.median(r[0] for r in runs),
                "loop_sps": statistics.median(r[1] for r in runs),
                "steps": sum(r[2] for r in runs),
            }
        )
        row = rows[-1]
        print(f"{env_id:<24}{preset or '-':<8}{row['env_sps']:>12,.0f} env steps/s{row['loop_sps']:>12,.0f} loop")
    cartpole = rows[0]["env_sps"]
    for row in rows:
        row["ratio"] = row["env_sps"] / cartpole
    return rows


def section(rows: list[dict], command: str) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"numpy {np.__version__}, gymnasium {gym.__version__}, {os.cpu_count()} CPUs shared with other jobs).",
        "",
        "Single env through `gym.make`, whole episodes with resets, random actions among those the mask allows;",
        "median of the repeats. *env steps/s* times only `step`/`reset`; *loop* also draws the action.",
        "*ratio* = env steps/s / CartPole-v1's env steps/s, measured in the same run.",
        "",
        "| env | scenario | env steps/s | loop steps/s | ratio to CartPole-v1 |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['env']}` | {r['scenario']} | {r['env_sps']:,.0f} | {r['loop_sps']:,.0f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace (or append) this benchmark's section; other sections are kept as they are. Atomic."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    write_atomic(path, new)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per repeat and case")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per case (the median is kept)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1:
        parser.error("--seconds must be > 0 and --repeats >= 1")
    rows = run(args.seconds, args.repeats)
    text = section(rows, "python bench/bench_env.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])))
    print("\n" + text)
    if not args.no_write:
        write_section(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
