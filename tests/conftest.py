"""Shared fixtures. Keep this file small: helpers used by one test module live in that module."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def masked_action():
    """``masked_action(rng, env, mask=None) -> action``: per slot, uniform among the choices the mask allows.

    ``mask`` is the flat ``sum(nvec)`` bool mask (default: ``env.action_masks()``); a mask of all
    True gives a uniform unmasked action.
    """

    def sample(rng: np.random.Generator, env, mask: np.ndarray | None = None) -> np.ndarray:
        base = env.unwrapped
        nvec = base.action_space.nvec
        mask = base.action_masks() if mask is None else mask
        starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        cols = np.arange(nvec.max())[None, :]
        valid = cols < nvec[:, None]
        allowed = valid & mask[np.where(valid, starts[:, None] + cols, 0)]
        return np.where(allowed, rng.random(allowed.shape), -1.0).argmax(axis=1).astype(np.int64)

    return sample


def run_evaluate(args: list[str]) -> tuple[int, str, str]:
    """``evaluate.main(args)`` in this process: (exit code, stdout, stderr)."""
    import evaluate

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = evaluate.main(args)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def train_tiny_agent(directory: Path, env_id: str = "CrossBorderDispatch-v0") -> Path:
    """A real (barely trained) masked-PPO agent on `tiny`, saved as train.py saves one."""
    import torch

    from agents import PPOConfig
    from agents.factory import build_model, make_normalized_vec_env
    from agents.policy import save_agent

    torch.set_num_threads(1)
    config = PPOConfig(
        env_id=env_id, scenario="tiny", n_envs=2, n_steps=24, batch_size=16, total_timesteps=48, eval_freq=0,
        hindsight=False,
    ).validate()  # fmt: skip
    venv = make_normalized_vec_env(config)
    model = build_model(config, venv)
    model.learn(total_timesteps=48)
    return save_agent(directory, model, venv, config)


@pytest.fixture(scope="session")
def tiny_agent(tmp_path_factory) -> Path:
    """A real (barely trained) masked-PPO agent on ``tiny``, in the directory format train.py writes."""
    return train_tiny_agent(tmp_path_factory.mktemp("agent") / "tiny-ppo")
