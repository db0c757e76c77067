"""Golden reference: the env and the MILP behave exactly as they did when the reference was recorded.

``tests/data/golden.npz`` holds, for every env id x preset, fixed seeds and a fixed action sequence
(masked-random choices, with every third day unmasked so that lost lots and refused transfers
occur): the observations, on-hand stock, flat masks, rewards, reward terms and final KPIs of each
step; and the proven MILP optima of ``tiny``, ``tiny-plus`` (all ids) and ``table1`` under
``CrossBorderRouting-v0``. Integers must match exactly, floats within 1e-9 relative. Nothing in it
depends on a wall-clock limit.

A refactor keeps this test passing unchanged. A deliberate change of behaviour regenerates the
file (``python tests/test_golden.py --write``) in the same commit, saying why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_plus() lives in the contract tests

from test_contract import tiny_plus  # noqa: E402

import envs  # noqa: E402
from envs.scenario import load_scenario  # noqa: E402

GOLDEN = Path(__file__).with_name("data") / "golden.npz"
RTOL = 1e-9
ENV_IDS = list(envs.ENV_IDS)
# (preset, seeds, days played): large is cut to 12 days to keep the reference file small
ROLLOUTS = [
    ("tiny", (0, 1, 2, 3), None),
    ("table1", (0, 1), None),
    ("table1-det", (0,), None),
    ("promo", (0, 1), None),
    ("large", (0,), 12),
]
# (scenario, env id, seed) whose optimum is proven in seconds (mip_gap=0, no time limit)
OPTIMA = (
    [("tiny", e, s) for e in ENV_IDS for s in range(4)]
    + [("tiny-plus", e, s) for e in ENV_IDS for s in range(3)]
    + [("table1", "CrossBorderRouting-v0", s) for s in (0, 5)]
)


def _scenario(name: str):
    return tiny_plus() if name == "tiny-plus" else load_scenario(name)


def _actions(env, seed: int, days: int) -> np.ndarray:
    """The fixed action sequence of a rollout: drawn once, stored in the reference, replayed as stored."""
    base = env.unwrapped
    rng = np.random.default_rng([seed, 7])
    nvec = base.action_space.nvec
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    cols = np.arange(nvec.max())[None, :]
    valid = cols < nvec[:, None]
    index = np.where(valid, starts[:, None] + cols, 0)
    env.reset(seed=seed)
    out = []
    for day in range(days):
        mask = base.action_masks() if day % 3 != 2 else np.ones(int(nvec.sum()), dtype=bool)
        action = np.where(valid & mask[index], rng.random(index.shape), -1.0).argmax(axis=1).astype(np.int64)
        out.append(action)
        env.step(action)
    return np.array(out, dtype=np.int64).reshape(days, len(nvec))


def rollout(env_id: str, preset: str, seed: int, actions: np.ndarray) -> dict[str, np.ndarray]:
    env = gym.make(env_id, scenario=preset)
    base = env.unwrapped
    obs, info = env.reset(seed=seed)
    rec = {"obs": [obs], "on_hand": [base.state.on_hand.reshape(-1).copy()], "mask": [info["action_mask"]]}
    rec |= {"reward": [], "terms": [], "view_lot_mask": [], "view_transfer_mask": []}
    kpis = None
    for action in actions:
        view = base.view()
        rec["view_lot_mask"].append(view.lot_mask.reshape(-1))
        rec["view_transfer_mask"].append(view.transfer_mask.reshape(-1))
        obs, reward, terminated, _, info = env.step(action)
        rec["obs"].append(obs)
        rec["on_hand"].append(base.state.on_hand.reshape(-1).copy())
        rec["mask"].append(info["action_mask"])
        rec["reward"].append(reward)
        rec["terms"].append([info["reward_terms"][name] for name in envs.TERM_NAMES])
        if terminated:
            kpis = info["episode_kpis"]
    out = {key: np.asarray(value) for key, value in rec.items()}
    out["mask"] = np.packbits(out["mask"], axis=1)
    for key in ("view_lot_mask", "view_transfer_mask"):
        out[key] = np.packbits(out[key], axis=1)
    out["kpis"] = np.array([kpis[name] for name in sorted(kpis)]) if kpis is not None else np.zeros(0)
    return out


def optimum(name: str, env_id: str, seed: int) -> float:
    from baselines import solve_hindsight

    res = solve_hindsight(_scenario(name), seed, env_id)
    assert res.status == "optimal", (name, env_id, seed, res.status)
    return float(res.objective)


def write_reference(path: Path = GOLDEN) -> None:
    data: dict[str, np.ndarray] = {}
    for preset, seeds, days in ROLLOUTS:
        for env_id in ENV_IDS:
            for seed in seeds:
                env = gym.make(env_id, scenario=preset)
                actions = _actions(env, seed, days or env.unwrapped.net.T)
                key = f"{env_id}/{preset}/{seed}"
                data[f"{key}/actions"] = actions
                for name, value in rollout(env_id, preset, seed, actions).items():
                    data[f"{key}/{name}"] = value
    data["optima"] = np.array([optimum(*case) for case in OPTIMA])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **data)
    tmp.replace(path)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as f:
        return {key: f[key] for key in f.files}


def _assert_same(key: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, (key, got.shape, want.shape)
    if np.issubdtype(want.dtype, np.floating):
        scale = np.maximum(np.abs(want), np.abs(got))
        bad = np.abs(got - want) > RTOL * scale
        assert not bad.any(), f"{key}: {int(bad.sum())} values differ, first at {np.argwhere(bad)[0]}"
    else:
        assert np.array_equal(got, want), f"{key}: differs at {np.argwhere(got != want)[0]}"


CASES = [(env_id, preset, seed) for preset, seeds, _ in ROLLOUTS for env_id in ENV_IDS for seed in seeds]


@pytest.mark.parametrize(("env_id", "preset", "seed"), CASES)
def test_rollout_matches_reference(golden, env_id, preset, seed):
    key = f"{env_id}/{preset}/{seed}"
    got = rollout(env_id, preset, seed, golden[f"{key}/actions"])
    for name, value in got.items():
        _assert_same(f"{key}/{name}", value, golden[f"{key}/{name}"])


@pytest.mark.parametrize(("case", "index"), [(case, i) for i, case in enumerate(OPTIMA)])
def test_optimum_matches_reference(golden, case, index):
    want = float(golden["optima"][index])
    assert optimum(*case) == pytest.approx(want, rel=RTOL, abs=RTOL)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="regenerate the golden reference (a deliberate behaviour change)")
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN}")
    if parser.parse_args().write:
        write_reference()
        print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")
