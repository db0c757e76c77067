"""Lot splitting (a leaf module): how a day's demand of a (region, SKU) becomes the lots of its slots.

The env, the sampler's ``Realization.lots``, the rolling MILP's forecast and the tests all split
demand here, so a lot means the same everywhere.
"""

from __future__ import annotations

import numpy as np


def lot_size(demand, J: int, j):
    """Units of lot ``j`` (0-based) of a demand split into ``J`` lots: ``demand // J``, plus one for the first
    ``demand % J`` lots. Scalars or broadcasting arrays; the compiled trace (:mod:`envs.kernels`) calls it too."""
    return demand // J + (j < demand % J)


def split_lots(demand: np.ndarray, J: int) -> np.ndarray:
    """Split integer demand ``[...]`` into ``J`` lots ``[..., J]``: as equal as possible, larger lots first."""
    return lot_size(demand[..., None], J, np.arange(J)).astype(demand.dtype)
