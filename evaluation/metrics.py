"""The optimality measures every report uses (DESIGN.md section 5), in one place."""

from __future__ import annotations

import numpy as np


def ratio_to_optimum(policy_return, hindsight_return):
    """``1 - (G_h - G_p) / |G_h|``: 1 at the optimum, below it for worse returns; NaN where ``G_h == 0``.

    Reads the same whether returns are profits or net costs. Scalars give a float, arrays an array.
    """
    p, h = np.asarray(policy_return, dtype=float), np.asarray(hindsight_return, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(h == 0, np.nan, 1.0 - (h - p) / np.abs(h))
    return float(ratio) if ratio.ndim == 0 else ratio


def relative_gap(bound: float, objective: float) -> float:
    """``(bound - objective) / max(|objective|, 1e-9)``: the solver's relative optimality gap (we maximize)."""
    return float((bound - objective) / max(abs(objective), 1e-9))
