"""Lot splitting (a leaf module): how a day's demand of a (region, SKU) becomes the lots of its slots.

The env, the sampler's ``Realization.lots``, the rolling MILP's forecast and the tests all split
demand here, so a lot means the same everywhere.
"""

from __future__ import annotations

import numpy as np


def split_lots(demand: np.ndarray, J: int) -> np.ndarray:
    """Split integer demand ``[...]`` into ``J`` lots ``[..., J]``: as equal as possible, larger lots first."""
    base = demand[..., None] // J
    extra = (np.arange(J) < (demand[..., None] % J)).astype(demand.dtype)
    return base + extra
