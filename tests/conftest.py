"""Shared fixtures. Keep this file small: helpers used by one test module live in that module."""

from __future__ import annotations

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
